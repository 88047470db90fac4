/**
 * A SIP sender meant to run inside a test's network namespace:
 *   ip netns exec NS node --import tsx test/helpers/udp-send.ts < plan.json > results.jsonl
 *
 * The plan (stdin, JSON) lists messages to send over UDP to one server, one at a time. Each message
 * goes out from its own address (`bind`, a 127.x.y.z address: every one of them is local on `lo`),
 * and the sender listens on that address, UDP and TCP, on every port in `ports`: a server answers a
 * request at the source address (Via `received`) and the Via sent-by port (5060 by default; over TCP
 * when the Via names TCP or TLS), so each message's replies arrive only at its own sockets.
 *
 * After the message, a fence (an OPTIONS to the server itself, with rport) is sent from the same
 * socket. The message is done when the fence was answered and then either a final reply (>= 200)
 * to the message arrived or `settleMs` passed; or when `maxWaitMs` passed in total. Prints one JSON
 * line per message: `{ id, replies: [{ transport, port, status, reason, callId, text }], fenced }`.
 */
import dgram from 'node:dgram';
import net from 'node:net';

interface PlanItem {
  id: string;
  /** the message, base64. */
  payload: string;
  /** local address to send from and listen on (127.x.y.z). */
  bind: string;
  /** ports to listen on (UDP and TCP); the message is sent from the first. */
  ports: number[];
}

interface Plan {
  server: { host: string; port: number };
  items: PlanItem[];
  settleMs: number;
  maxWaitMs: number;
}

interface Reply {
  transport: 'udp' | 'tcp';
  port: number;
  status: number;
  reason: string;
  callId: string | undefined;
  text: string;
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (d: string) => (s += d));
    process.stdin.on('end', () => resolve(s));
    process.stdin.on('error', reject);
  });
}

function parseReply(text: string, transport: 'udp' | 'tcp', port: number): Reply | undefined {
  const m = /^SIP\/2\.0 (\d{3}) ([^\r\n]*)/.exec(text);
  if (!m) return undefined;
  const cid = /^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)/im.exec(text);
  return { transport, port, status: Number(m[1]), reason: m[2]!, callId: cid?.[1]?.trim(), text };
}

/** Split a TCP byte stream into messages by their start lines (replies here carry no bodies, or a Content-Length we honour). */
function splitStream(buf: string): { messages: string[]; rest: string } {
  const messages: string[] = [];
  let rest = buf;
  for (let i = 0; i < 1000; i++) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end);
    const cl = /^(?:content-length|l)[ \t]*:[ \t]*(\d+)/im.exec(head);
    const len = cl ? Number(cl[1]) : 0;
    if (rest.length < end + 4 + len) break;
    messages.push(rest.slice(0, end + 4 + len));
    rest = rest.slice(end + 4 + len);
  }
  return { messages, rest };
}

async function sendOne(plan: Plan, item: PlanItem, seq: number): Promise<{ replies: Reply[]; fenced: boolean }> {
  const replies: Reply[] = [];
  const fenceId = `fence-${seq}-${Math.random().toString(36).slice(2)}`;
  let fenced = false;
  let wake: () => void = () => undefined;
  const onText = (text: string, transport: 'udp' | 'tcp', port: number): void => {
    const r = parseReply(text, transport, port);
    if (r === undefined) return;
    if (r.callId === fenceId) fenced = true;
    else replies.push(r);
    wake();
  };

  const udps: dgram.Socket[] = [];
  const tcps: net.Server[] = [];
  const conns = new Set<net.Socket>();
  for (const port of item.ports) {
    const u = dgram.createSocket('udp4');
    u.on('message', (msg) => onText(msg.toString('latin1'), 'udp', port));
    u.on('error', () => undefined);
    await new Promise<void>((resolve, reject) => {
      u.once('error', reject);
      u.bind(port, item.bind, () => resolve());
    });
    udps.push(u);
    const t = net.createServer((c) => {
      conns.add(c);
      let buf = '';
      c.setEncoding('latin1');
      c.on('data', (d: string) => {
        const { messages, rest } = splitStream(buf + d);
        buf = rest;
        for (const m of messages) onText(m, 'tcp', port);
      });
      c.on('error', () => undefined);
      c.on('close', () => conns.delete(c));
    });
    await new Promise<void>((resolve, reject) => {
      t.once('error', reject);
      t.listen(port, item.bind, () => resolve());
    });
    tcps.push(t);
  }

  const sock = udps[0]!;
  const fromPort = item.ports[0]!;
  const send = (b: Buffer): Promise<void> => new Promise((resolve) => sock.send(b, plan.server.port, plan.server.host, () => resolve()));
  await send(Buffer.from(item.payload, 'base64'));
  const fence = [
    `OPTIONS sip:${plan.server.host}:${plan.server.port} SIP/2.0`,
    `Via: SIP/2.0/UDP ${item.bind}:${fromPort};branch=z9hG4bK${fenceId};rport`,
    'Max-Forwards: 70',
    `From: <sip:fence@${item.bind}>;tag=${fenceId}`,
    `To: <sip:${plan.server.host}:${plan.server.port}>`,
    `Call-ID: ${fenceId}`,
    'CSeq: 1 OPTIONS',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
  await send(Buffer.from(fence, 'latin1'));

  const t0 = Date.now();
  let fencedAt: number | undefined;
  for (let i = 0; i < 10_000; i++) {
    const now = Date.now();
    if (fenced && fencedAt === undefined) fencedAt = now;
    const gotFinal = replies.some((r) => r.status >= 200);
    if (fencedAt !== undefined && (gotFinal || now - fencedAt >= plan.settleMs)) break;
    if (now - t0 >= plan.maxWaitMs) break;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 25);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  for (const c of conns) c.destroy();
  await Promise.all(udps.map((u) => new Promise<void>((r) => u.close(() => r()))));
  await Promise.all(tcps.map((t) => new Promise<void>((r) => t.close(() => r()))));
  return { replies, fenced };
}

const plan = JSON.parse(await readStdin()) as Plan;
let seq = 0;
for (const item of plan.items) {
  const r = await sendOne(plan, item, seq++);
  process.stdout.write(JSON.stringify({ id: item.id, ...r }) + '\n');
}
