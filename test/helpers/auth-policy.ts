import fs from 'node:fs';
import path from 'node:path';

/**
 * A policy under `settings.auth` (null: the key left out): the group `bots` (user ci-bot) alone
 * may reach bots.example; everyone may reach open.example. Written as policy.yaml into `dir`.
 */
export function writeAuthPolicy(dir: string, auth: 'off' | 'optional' | 'required' | null): void {
  fs.writeFileSync(path.join(dir, 'policy.yaml'), [
    'version: 1',
    ...(auth === null ? [] : ['settings:', `  auth: ${auth}`]),
    'clients:',
    '  bots:',
    '    users: [ci-bot]',
    'rules:',
    '  - name: bots-only',
    '    action: allow',
    '    clients: [bots]',
    '    hosts: [bots.example]',
    '  - name: everyone',
    '    action: allow',
    '    hosts: [open.example]',
    '',
  ].join('\n'));
}
