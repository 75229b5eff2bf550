/** PROXY protocol headers as a load balancer writes them, for raw-socket tests. */

export function v1(family: 'TCP4' | 'TCP6', src: string, sport: number): Buffer {
  const dst = family === 'TCP4' ? '127.0.0.1' : '::1';
  return Buffer.from(`PROXY ${family} ${src} ${dst} ${sport} 3128\r\n`, 'latin1');
}

export const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 PROXY (or LOCAL) header; `tlv` bytes are appended after the addresses. */
export function v2(command: 'PROXY' | 'LOCAL', src?: { ip: string; port: number }, tlv: Buffer = Buffer.alloc(0)): Buffer {
  if (command === 'LOCAL' || src === undefined) return Buffer.concat([SIGNATURE, Buffer.from([0x20, 0x00, 0, 0])]);
  const six = src.ip.includes(':');
  const addresses = six ? Buffer.concat([ipv6Bytes(src.ip), ipv6Bytes('::1')]) : Buffer.from([...src.ip.split('.').map(Number), 127, 0, 0, 1]);
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(src.port, 0);
  ports.writeUInt16BE(3128, 2);
  const body = Buffer.concat([addresses, ports, tlv]);
  const head = Buffer.from([0x21, six ? 0x21 : 0x11, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([SIGNATURE, head, body]);
}

function ipv6Bytes(ip: string): Buffer {
  const [left, right = ''] = ip.split('::');
  const l = left === '' ? [] : left.split(':');
  const r = right === '' ? [] : right.split(':');
  const groups = [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

