/**
 * A small REGISTER+auth load generator over UDP (for heap snapshots of a running sipd, not a
 * benchmark: use bench/sipp/load.sh for figures).
 *
 *   node --import tsx bench/reg-load.ts users sqlite:/tmp/x.sqlite N        create the schema + user0..userN-1 @127.0.0.1, password "pw"
 *   node --import tsx bench/reg-load.ts load HOST:PORT RATE SECONDS N       RATE flows/s for SECONDS, users round-robin
 *
 * One flow: REGISTER → 401 (digest MD5, qop=auth when offered) → REGISTER with Authorization → 200.
 * Each flow has its own Call-ID and branches. Bounded: SECONDS of sending, then 2 s for answers.
 * Prints counts (flows started, 200, 401, other statuses, unanswered) as JSON.
 */
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { parseDbUrl } from '../src/config.js';
import { initSchema, openStores } from '../src/store/index.js';

const [mode, a1, a2, a3, a4] = process.argv.slice(2);
const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

if (mode === 'users') {
  const db = parseDbUrl(a1 ?? '');
  const n = Number(a2 ?? 100);
  await initSchema(db);
  const stores = await openStores({ db, location: { db_mode: 'memory' } });
  for (let i = 0; i < n; i++) await stores.subscribers.add(`user${i}`, '127.0.0.1', 'pw').catch(() => undefined);
  await stores.close();
  console.log(JSON.stringify({ users: n }));
  process.exit(0);
}
if (mode !== 'load') {
  console.error('usage: reg-load.ts users DBURL N | load HOST:PORT RATE SECONDS N');
  process.exit(2);
}

const [host, portText] = (a1 ?? '127.0.0.1:5060').split(':') as [string, string];
const port = Number(portText);
const RATE = Number(a2 ?? 300);
const SECONDS = Number(a3 ?? 20);
const USERS = Number(a4 ?? 100);
const sock = dgram.createSocket('udp4');
await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
const lport = sock.address().port;
const counts = { flows: 0, ok: 0, challenged: 0, other: 0 as number, others: {} as Record<string, number> };
/** flows waiting for an answer, by Call-ID (bounded: a flow is dropped after 2 s) */
const pending = new Map<string, { user: string; at: number; cseq: number }>();

function register(user: string, callId: string, cseq: number, auth?: string): string {
  const branch = 'z9hG4bK' + randomBytes(8).toString('hex');
  return [
    'REGISTER sip:127.0.0.1 SIP/2.0',
    `Via: SIP/2.0/UDP 127.0.0.1:${lport};branch=${branch};rport`,
    'Max-Forwards: 70',
    `From: <sip:${user}@127.0.0.1>;tag=${callId.slice(0, 8)}`,
    `To: <sip:${user}@127.0.0.1>`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} REGISTER`,
    `Contact: <sip:${user}@127.0.0.1:${lport}>`,
    ...(auth !== undefined ? [`Authorization: ${auth}`] : []),
    'Expires: 3600',
    'User-Agent: reg-load',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

function param(h: string, name: string): string | undefined {
  const m = new RegExp(`${name}="?([^",]*)"?`, 'i').exec(h);
  return m?.[1];
}

sock.on('message', (buf) => {
  const text = buf.toString('latin1');
  const status = Number(text.slice(8, 11));
  const callId = /\r\nCall-ID:\s*([^\r]+)/i.exec(text)?.[1]?.trim();
  const p = callId === undefined ? undefined : pending.get(callId);
  if (p === undefined || callId === undefined) return;
  if (status === 401 && p.cseq === 1) {
    counts.challenged++;
    const www = /\r\nWWW-Authenticate:\s*([^\r]+)/i.exec(text)?.[1] ?? '';
    const realm = param(www, 'realm') ?? '127.0.0.1';
    const nonce = param(www, 'nonce') ?? '';
    const opaque = param(www, 'opaque');
    const qop = /qop="?[^"]*auth/i.test(www);
    const cnonce = randomBytes(4).toString('hex');
    const ha1 = md5(`${p.user}:${realm}:pw`);
    const ha2 = md5('REGISTER:sip:127.0.0.1');
    const response = qop ? md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${ha2}`) : md5(`${ha1}:${nonce}:${ha2}`);
    const auth =
      `Digest username="${p.user}", realm="${realm}", nonce="${nonce}", uri="sip:127.0.0.1", response="${response}", algorithm=MD5` +
      (qop ? `, qop=auth, nc=00000001, cnonce="${cnonce}"` : '') +
      (opaque !== undefined ? `, opaque="${opaque}"` : '');
    p.cseq = 2;
    sock.send(register(p.user, callId, 2, auth), port, host);
    return;
  }
  if (status < 200) return;
  pending.delete(callId);
  if (status === 200) counts.ok++;
  else {
    counts.other++;
    counts.others[status] = (counts.others[status] ?? 0) + 1;
  }
});

const started = Date.now();
let sent = 0;
let unanswered = 0;
await new Promise<void>((done) => {
  const tick = setInterval(() => {
    const now = Date.now();
    const due = Math.min(RATE * SECONDS, Math.floor(((now - started) / 1000) * RATE));
    for (; sent < due; sent++) {
      const user = `user${sent % USERS}`;
      const callId = randomBytes(10).toString('hex');
      pending.set(callId, { user, at: now, cseq: 1 });
      counts.flows++;
      sock.send(register(user, callId, 1), port, host);
    }
    for (const [id, p] of pending) {
      if (now - p.at < 2000) break; // Map order = start order
      pending.delete(id);
      unanswered++;
    }
    if (now - started > SECONDS * 1000 + 2000) {
      clearInterval(tick);
      done();
    }
  }, 5);
});
unanswered += pending.size;
sock.close();
console.log(JSON.stringify({ rate: RATE, seconds: SECONDS, ...counts, unanswered, elapsedMs: Date.now() - started }));
