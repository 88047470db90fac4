// The floor for a Node.js SIP server: a bare UDP responder for reg.xml's flow
// (REGISTER -> 401 with WWW-Authenticate -> REGISTER + Authorization -> 200).
// No SIP logic, no parser, no transactions, no DB, no digest check: string
// work only. It copies the Via/From/To/Call-ID/CSeq lines, adds a To tag, and
// answers a REGISTER that carries an Authorization header with 200, any other
// REGISTER with 401. Other requests and responses are ignored.
// Whatever a real Node.js server spends per registration above this process's
// CPU is its own work. Run by bench/sipp/load.sh with TARGET=floor.
//
//   FLOOR_PORT=5090 FLOOR_HOST=127.0.0.1 FLOOR_REALM=127.0.0.1 node bench/sipp/floor.mjs
import dgram from 'node:dgram';

const host = process.env.FLOOR_HOST || '127.0.0.1';
const port = Number(process.env.FLOOR_PORT || 5090);
const realm = process.env.FLOOR_REALM || '127.0.0.1';
const COPY = new Set(['via', 'v', 'from', 'f', 'call-id', 'i', 'cseq']);
const sock = dgram.createSocket('udp4');
let nonce = 0;

sock.on('message', (buf, rinfo) => {
  const msg = buf.toString('latin1');
  if (!msg.startsWith('REGISTER ')) return;
  const end = msg.indexOf('\r\n\r\n');
  const lines = (end < 0 ? msg : msg.slice(0, end)).split('\r\n');
  let copied = '';
  let auth = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (name === 'authorization') auth = true;
    else if (name === 'to' || name === 't') copied += line.includes(';tag=') ? `${line}\r\n` : `${line};tag=fl${rinfo.port}\r\n`;
    else if (COPY.has(name)) copied += `${line}\r\n`;
  }
  const res = auth
    ? `SIP/2.0 200 OK\r\n${copied}Content-Length: 0\r\n\r\n`
    : `SIP/2.0 401 Unauthorized\r\n${copied}WWW-Authenticate: Digest realm="${realm}", nonce="${(++nonce).toString(16)}", algorithm=MD5\r\nContent-Length: 0\r\n\r\n`;
  sock.send(res, rinfo.port, rinfo.address);
});
sock.on('error', (err) => {
  process.stderr.write(`floor: ${err.message}\n`);
  process.exit(1);
});
sock.bind(port, host, () => process.stdout.write(`floor listening on udp:${host}:${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => sock.close(() => process.exit(0)));
