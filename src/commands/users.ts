import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { hashPassword } from '../auth/password-hash';
import { USER_NAME } from '../auth/users-file';

export const USERS_HELP = `usage: tollgate users add NAME

Reads a password (from standard input when it is not a terminal, else a prompt that does
not echo) and prints the users-file line "NAME:$scrypt$...". Append it to the file named by
--users / TOLLGATE_USERS_FILE; the proxy reloads the file on change.
`;

/** Read a whole non-interactive stdin, dropping one trailing newline. */
async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Prompt on the terminal without echoing what is typed. */
function prompt(question: string): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk: Buffer, _encoding, done) {
      if (!muted) process.stderr.write(chunk);
      done();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
    muted = true;
  });
}

async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) return readStdin();
  const first = await prompt('password: ');
  const second = await prompt('again: ');
  if (first !== second) throw new Error('the passwords differ');
  return first;
}

/** `tollgate users add NAME` */
export async function runUsers(args: string[]): Promise<number> {
  const [sub, name, ...rest] = args;
  if (sub === '--help' || sub === '-h' || sub === undefined) {
    process.stdout.write(USERS_HELP);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'add' || name === undefined || rest.length > 0 || !USER_NAME.test(name)) {
    process.stderr.write(`tollgate users: expected "add NAME" with NAME of letters, digits, ".", "_", "@", "-"\n\n${USERS_HELP}`);
    return 2;
  }
  const password = await readPassword();
  if (password.length < 8) {
    process.stderr.write('tollgate users: the password must have at least 8 characters\n');
    return 2;
  }
  process.stdout.write(`${name}:${await hashPassword(password)}\n`);
  return 0;
}
