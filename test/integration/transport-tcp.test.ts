/** src/transport over real TCP sockets on 127.0.0.1 (ephemeral ports): framing, connections, limits. */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, SipRequest, SipResponse, StreamFramer, type SipParseError } from '../../src/sip/index.js';
import {
  createTransportLayer,
  responseTarget,
  TransportError,
  type LocalEndpoint,
  type SipTransportLayer,
  type Source,
  type TransportLayerOptions,
  type TransportLimits,
} from '../../src/transport/index.js';

const LIMITS: TransportLimits = {
  maxMessageSize: 65536,
  maxHeaders: 256,
  maxHeaderLine: 8192,
  maxVias: 70,
  tcpMaxConnections: 100,
  tcpMaxPerIp: 100,
  tcpIdleTimeoutMs: 60_000,
  tcpMaxBuffer: 131072,
};

interface Got {
  requests: Array<{ req: SipRequest; src: Source }>;
  responses: Array<{ res: SipResponse; src: Source }>;
  errors: Array<{ err: SipParseError; src: Source }>;
  closed: Array<{ id: number; reason: string }>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function layer(
  extra: Partial<TransportLayerOptions> = {},
  onRequest?: (req: SipRequest, src: Source, t: SipTransportLayer) => void,
): Promise<{ t: SipTransportLayer; got: Got; ep: LocalEndpoint }> {
  const got: Got = { requests: [], responses: [], errors: [], closed: [] };
  const t: SipTransportLayer = createTransportLayer({
    listen: [
      { transport: 'tcp', host: '127.0.0.1', port: 0 },
      { transport: 'udp', host: '127.0.0.1', port: 0 },
    ],
    limits: LIMITS,
    events: {
      request: (req, src) => {
        got.requests.push({ req, src });
        onRequest?.(req, src, t);
      },
      response: (res, src) => got.responses.push({ res, src }),
      parseError: (err, src) => got.errors.push({ err, src }),
      connectionClosed: (id, _peer, reason) => got.closed.push({ id, reason }),
    },
    ...extra,
  });
  await t.start();
  cleanups.push(() => t.close());
  return { t, got, ep: t.endpointFor('tcp', 4)! };
}

/** a TCP client socket that collects what it receives. */
interface Client {
  sock: net.Socket;
  received: () => Buffer;
  closed: () => boolean;
}

/** like connect(), but a connection the server resets at once (a limit) also resolves, as closed. */
function tryConnect(port: number): Promise<Client> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let isClosed = false;
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const client: Client = { sock, received: () => Buffer.concat(chunks), closed: () => isClosed };
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      isClosed = true;
      resolve(client);
    });
    sock.once('connect', () => resolve(client));
    cleanups.push(() => {
      sock.destroy();
    });
  });
}

function connect(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let isClosed = false;
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      isClosed = true;
    });
    sock.once('connect', () => resolve({ sock, received: () => Buffer.concat(chunks), closed: () => isClosed }));
    sock.once('error', reject);
    cleanups.push(() => {
      sock.destroy();
    });
  });
}

/** a TCP server standing in for a downstream SIP peer: counts connections, frames what it receives. */
async function tcpPeer(): Promise<{ port: number; connections: net.Socket[]; messages: Array<{ data: Buffer; conn: number }> }> {
  const connections: net.Socket[] = [];
  const messages: Array<{ data: Buffer; conn: number }> = [];
  const server = net.createServer((sock) => {
    const idx = connections.push(sock) - 1;
    const framer = new StreamFramer({ maxMessageSize: 65536 });
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      for (const ev of framer.push(d)) if (ev.type === 'message') messages.push({ data: ev.data, conn: idx });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of connections) s.destroy();
        server.close(() => r());
      }),
  );
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return { port: a.port, connections, messages };
}

async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function options(callId: string, via = 'SIP/2.0/TCP client.invalid:5099;branch=z9hG4bK' + callId, extra = ''): string {
  return (
    `OPTIONS sip:proxy@127.0.0.1;transport=tcp SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: <sip:a@test>;tag=ft\r\nTo: <sip:proxy@127.0.0.1>\r\n` +
    `Call-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\n${extra}Content-Length: 0\r\n\r\n`
  );
}

const write = (c: Client, s: string | Buffer): Promise<void> =>
  new Promise((resolve, reject) => c.sock.write(typeof s === 'string' ? Buffer.from(s, 'latin1') : s, (e) => (e ? reject(e) : resolve())));

describe('TCP framing', () => {
  it('one message split over many segments (byte by byte)', async () => {
    const { t, got, ep } = await layer();
    const c = await connect(ep.port);
    const msg = Buffer.from(options('bytewise', undefined, 'Subject: split\r\n').replace('Content-Length: 0', 'Content-Length: 5') + 'hello', 'latin1');
    const before = t.stats().bytesIn;
    for (let i = 0; i < msg.length; i++) {
      await write(c, msg.subarray(i, i + 1));
      // the server has read this byte before the next one is sent: every byte is its own segment
      await until(() => t.stats().bytesIn === before + i + 1);
    }
    await until(() => got.requests.length === 1);
    const { req, src } = got.requests[0]!;
    expect(req.callId()).toBe('bytewise');
    expect(req.body.toString()).toBe('hello');
    expect(src.transport).toBe('tcp');
    expect(src.address).toBe('127.0.0.1');
    expect(src.port).toBe(c.sock.localPort);
    expect(src.local).toEqual(ep);
    expect(typeof src.connectionId).toBe('number');
    expect(req.topVia()!.received).toBe('127.0.0.1');
  });

  it('many messages in one segment arrive in order', async () => {
    const { got, ep } = await layer();
    const c = await connect(ep.port);
    const n = 50;
    let all = '';
    for (let i = 0; i < n; i++) all += options(`many-${i}`);
    await write(c, all);
    await until(() => got.requests.length === n);
    expect(got.requests.map((r) => r.req.callId())).toEqual(Array.from({ length: n }, (_, i) => `many-${i}`));
    expect(new Set(got.requests.map((r) => r.src.connectionId)).size).toBe(1);
  });

  it('a stream of messages and keep-alives cut at pseudo-random points arrives whole and in order', async () => {
    const { t, got, ep } = await layer();
    const c = await connect(ep.port);
    let stream = '';
    for (let i = 0; i < 20; i++) {
      const body = 'v=0\r\n'.repeat(i % 4);
      stream += options(`rnd-${i}`).replace('Content-Length: 0', `Content-Length: ${body.length}`) + body;
      if (i % 5 === 0) stream += '\r\n\r\n';
    }
    const data = Buffer.from(stream, 'latin1');
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return 1 + (seed % n);
    };
    const before = t.stats().bytesIn;
    for (let off = 0; off < data.length; ) {
      const n = Math.min(rnd(200), data.length - off);
      await write(c, data.subarray(off, off + n));
      off += n;
      await until(() => t.stats().bytesIn === before + off);
    }
    await until(() => got.requests.length === 20);
    expect(got.requests.map((r) => r.req.callId())).toEqual(Array.from({ length: 20 }, (_, i) => `rnd-${i}`));
    expect(got.requests.map((r) => r.req.body.length)).toEqual(Array.from({ length: 20 }, (_, i) => 5 * (i % 4)));
    await until(() => c.received().length === 8);
    expect(c.received().toString('latin1')).toBe('\r\n'.repeat(4));
  });

  it('a CRLFCRLF keep-alive gets a CRLF pong', async () => {
    const { got, ep } = await layer();
    const c = await connect(ep.port);
    await write(c, '\r\n\r\n');
    await until(() => c.received().length >= 2);
    expect(c.received().toString('latin1')).toBe('\r\n');
    // the connection is still usable afterwards
    await write(c, options('after-ping'));
    await until(() => got.requests.length === 1);
  });

  it('an oversize message closes the connection and is counted', async () => {
    const { t, got, ep } = await layer({ limits: { ...LIMITS, maxMessageSize: 2000 } });
    const c = await connect(ep.port);
    await until(() => t.stats().connections.inbound === 1);
    await write(c, `OPTIONS sip:x SIP/2.0\r\nX-Pad: ${'a'.repeat(3000)}`).catch(() => undefined);
    await until(() => c.closed());
    await until(() => t.stats().connections.total === 0);
    expect(t.stats().drops['tcp-too-large']).toBe(1);
    expect(got.errors.map((e) => e.err.code)).toEqual(['TOO_LARGE']);
    expect(got.closed.map((x) => x.reason)).toEqual(['too-large']);
    expect(got.requests).toHaveLength(0);
  });

  it('a stream framing error (no Content-Length) closes the connection and is counted', async () => {
    const { t, ep } = await layer();
    const c = await connect(ep.port);
    await write(c, options('nocl').replace('Content-Length: 0\r\n', ''));
    await until(() => c.closed());
    await until(() => t.stats().connections.total === 0);
    expect(t.stats().drops['tcp-framing']).toBe(1);
  });

  it('a frame that does not parse raises parseError and keeps the connection', async () => {
    const { t, got, ep } = await layer();
    const c = await connect(ep.port);
    await write(c, 'OPTIONS sip:x SIP/2.0\r\nbroken header line\r\nContent-Length: 0\r\n\r\n' + options('good'));
    await until(() => got.requests.length === 1);
    expect(got.errors.map((e) => e.err.code)).toEqual(['BAD_HEADER']);
    expect(got.errors[0]!.src.connectionId).toBe(got.requests[0]!.src.connectionId);
    expect(t.stats().connections.inbound).toBe(1);
  });
});

describe('TCP connections', () => {
  it('a response goes back on the connection the request came in on', async () => {
    const { got, ep } = await layer({}, (req, src, t) => {
      const res = buildResponse(req, 200);
      void t.send(res.toBuffer(), responseTarget(res, src));
    });
    const c = await connect(ep.port);
    // sent-by names a port nobody listens on: only the connection reaches the client
    await write(c, options('resp-conn'));
    await until(() => c.received().length > 0 && c.received().includes('\r\n\r\n'));
    const res = parseMessage(c.received());
    expect(res).toBeInstanceOf(SipResponse);
    expect((res as SipResponse).status).toBe(200);
    expect(got.requests).toHaveLength(1);
  });

  it('when the request connection is gone, the response opens a connection to received:sent-by port', async () => {
    const downstream = await tcpPeer();
    const { t, got, ep } = await layer();
    const c = await connect(ep.port);
    await write(c, options('fallback', `SIP/2.0/TCP client.invalid:${downstream.port};branch=z9hG4bKfb`));
    await until(() => got.requests.length === 1);
    const { req, src } = got.requests[0]!;
    c.sock.destroy();
    await until(() => !t.isConnectionOpen(src.connectionId!));
    const res = buildResponse(req, 200);
    const target = responseTarget(res, src);
    expect(target).toMatchObject({ transport: 'tcp', address: '127.0.0.1', port: downstream.port, connectionId: src.connectionId });
    await t.send(res.toBuffer(), target);
    await until(() => downstream.messages.length === 1);
    expect((parseMessage(downstream.messages[0]!.data) as SipResponse).status).toBe(200);
  });

  it('requests to a peer reuse one connection (also when sent concurrently); its responses come back on it', async () => {
    const downstream = await tcpPeer();
    const { t, got, ep } = await layer();
    const target = { transport: 'tcp' as const, address: '127.0.0.1', port: downstream.port };
    const via = (b: string): string => `SIP/2.0/TCP ${ep.advertise}:${ep.port};branch=z9hG4bK${b}`;
    await Promise.all([0, 1, 2, 3, 4].map((i) => t.send(Buffer.from(options(`reuse-${i}`, via(`c${i}`)), 'latin1'), target)));
    await t.send(Buffer.from(options('reuse-5', via('c5')), 'latin1'), target);
    await until(() => downstream.messages.length === 6);
    expect(downstream.connections).toHaveLength(1);
    expect(t.stats().connections).toEqual({ total: 1, inbound: 0, outbound: 1 });
    const conn = t.connections()[0]!;
    expect(conn).toMatchObject({ direction: 'out', remoteAddress: '127.0.0.1', remotePort: downstream.port, local: ep });
    // the downstream answers on the same connection
    const req = parseMessage(downstream.messages[0]!.data) as SipRequest;
    downstream.connections[0]!.write(buildResponse(req, 200).toBuffer());
    await until(() => got.responses.length === 1);
    expect(got.responses[0]!.src.connectionId).toBe(conn.id);
    expect(got.responses[0]!.src.local).toEqual(ep);
  });

  it('a request to an address:port with an open inbound connection reuses it', async () => {
    const { t, got, ep } = await layer();
    const c = await connect(ep.port);
    await write(c, options('hello'));
    await until(() => got.requests.length === 1);
    await t.send(Buffer.from(options('back', `SIP/2.0/TCP ${ep.advertise}:${ep.port};branch=z9hG4bKback`), 'latin1'), {
      transport: 'tcp',
      address: '127.0.0.1',
      port: c.sock.localPort!,
    });
    await until(() => c.received().includes('\r\n\r\n'));
    expect((parseMessage(c.received()) as SipRequest).callId()).toBe('back');
    expect(t.stats().connections.total).toBe(1);
  });

  it('a message over 1300 bytes to a UDP target without explicit transport goes over TCP (§18.1.1)', async () => {
    const { t } = await layer();
    const target = { transport: 'udp' as const, address: '127.0.0.1', port: 5060 };
    expect(t.chooseTransport(1300, target)).toBe(target);
    expect(t.chooseTransport(1301, target)).toEqual({ transport: 'tcp', address: '127.0.0.1', port: 5060 });
    expect(t.chooseTransport(1301, target, true)).toBe(target);
  });

  it('connection refused rejects send() with TransportError', async () => {
    const { t } = await layer();
    const s = net.createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    const port = (s.address() as net.AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
    const err: unknown = await t.send(Buffer.from(options('refused')), { transport: 'tcp', address: '127.0.0.1', port }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).kind).toBe('refused');
    expect(t.stats().sendErrors.refused).toBe(1);
    expect(t.stats().connections.total).toBe(0);
  });

  it('idle connections are closed (idle timeout)', async () => {
    const { t, got, ep } = await layer({ limits: { ...LIMITS, tcpIdleTimeoutMs: 200 } });
    const c = await connect(ep.port);
    await write(c, options('idle'));
    await until(() => got.requests.length === 1);
    await until(() => c.closed());
    await until(() => t.stats().connections.total === 0);
    expect(got.closed.map((x) => x.reason)).toEqual(['idle']);
  });

  it('a connection closed or reset by the peer is removed and reported', async () => {
    const { t, got, ep } = await layer();
    const a = await connect(ep.port);
    const b = await connect(ep.port);
    await write(a, options('a'));
    await write(b, options('b'));
    await until(() => got.requests.length === 2);
    expect(t.stats().connections.inbound).toBe(2);
    a.sock.end();
    b.sock.resetAndDestroy();
    await until(() => t.stats().connections.total === 0);
    expect(got.closed.map((x) => x.reason).sort()).toEqual(['closed', 'reset']);
    expect(t.connections()).toEqual([]);
    const s = t.stats();
    expect(s.connectionsOpened).toBe(2);
    expect(s.connectionsClosed).toBe(2);
    // a response to a closed connection without a reachable fallback is a TransportError, not a crash
    const res = buildResponse(got.requests[0]!.req, 200);
    await expect(t.send(res.toBuffer(), responseTarget(res, got.requests[0]!.src))).rejects.toBeInstanceOf(TransportError);
  });

  it('output is bounded: a peer that does not read gets its connection closed', async () => {
    const { t, got, ep } = await layer({ limits: { ...LIMITS, tcpMaxBuffer: 64 * 1024 } });
    const c = await connect(ep.port);
    c.sock.pause();
    await write(c, options('slow'));
    await until(() => got.requests.length === 1);
    const id = got.requests[0]!.src.connectionId!;
    const big = Buffer.from(options('big', undefined, `X-Pad: ${'p'.repeat(30_000)}\r\n`), 'latin1');
    const target = { transport: 'tcp' as const, address: '127.0.0.1', port: c.sock.localPort!, connectionId: id };
    let rejected: unknown;
    // bounded loop: the kernel buffers some megabytes before writes queue in user space
    for (let i = 0; i < 5000 && rejected === undefined; i++) {
      t.send(big, target).catch((e: unknown) => {
        rejected ??= e;
      });
      await tick();
    }
    expect(rejected).toBeInstanceOf(TransportError);
    await until(() => t.stats().connections.total === 0);
    expect(t.stats().drops['tcp-output-overflow']).toBe(1);
    expect(got.closed.map((x) => x.reason)).toEqual(['output-overflow']);
  });

  it('close() closes every connection', async () => {
    const downstream = await tcpPeer();
    const { t, ep } = await layer();
    const c = await connect(ep.port);
    await t.send(Buffer.from(options('out')), { transport: 'tcp', address: '127.0.0.1', port: downstream.port });
    await until(() => t.stats().connections.total === 2);
    await t.close();
    expect(t.stats().connections.total).toBe(0);
    await until(() => c.closed());
  });
});

describe('TCP listener', () => {
  it('EADDRINUSE on a TCP listener rejects start() naming the address, and releases what was already bound', async () => {
    const { ep } = await layer();
    const probe = await layer();
    const udpPort = probe.t.endpointFor('udp', 4)!.port;
    await probe.t.close();
    const t2 = createTransportLayer({
      listen: [
        { transport: 'udp', host: '127.0.0.1', port: udpPort },
        { transport: 'tcp', host: '127.0.0.1', port: ep.port },
      ],
      limits: LIMITS,
      events: { request: () => undefined, response: () => undefined, parseError: () => undefined },
    });
    await expect(t2.start()).rejects.toThrow(`cannot listen on tcp:127.0.0.1:${ep.port}: address already in use`);
    // the UDP socket bound before the failure was closed again
    const t3 = createTransportLayer({
      listen: [{ transport: 'udp', host: '127.0.0.1', port: udpPort }],
      limits: LIMITS,
      events: { request: () => undefined, response: () => undefined, parseError: () => undefined },
    });
    await t3.start();
    expect(t3.endpoints()[0]!.port).toBe(udpPort);
    await t3.close();
  });
});

describe('TCP admission hook', () => {
  it('is asked for each accepted connection before the limits; a refused one is reset and counted banned', async () => {
    const asked: string[] = [];
    let refuse = true;
    const { t, got, ep } = await layer({
      limits: { ...LIMITS, tcpMaxPerIp: 1 },
      admit: (p, kind) => {
        asked.push(`${p.transport}:${p.address}:${kind}`);
        return !refuse;
      },
    });
    const refused = await tryConnect(ep.port);
    await until(() => refused.closed());
    expect(asked).toEqual(['tcp:127.0.0.1:connection']);
    expect(t.stats().drops.banned).toBe(1);
    // refused connections hold no slot: the per-IP limit of 1 still admits the next one
    expect(t.stats().connections.inbound).toBe(0);
    refuse = false;
    const ok = await connect(ep.port);
    await write(ok, options('adm-ok'));
    await until(() => got.requests.length === 1);
    expect(asked).toEqual(['tcp:127.0.0.1:connection', 'tcp:127.0.0.1:connection', 'tcp:127.0.0.1:message']);
    expect(t.stats().drops['tcp-per-ip-limit']).toBe(0);
  });

  it('a refused message or ping is dropped before parsing and closes its connection (reason banned)', async () => {
    const kinds: string[] = [];
    let refuseFrom = Infinity;
    const { t, got, ep } = await layer({
      admit: (_p, kind) => kinds.push(kind) <= refuseFrom,
    });
    const c = await connect(ep.port);
    await write(c, options('m1') + '\r\n\r\n' + 'garbage without a header\r\nContent-Length: 0\r\n\r\n');
    await until(() => got.requests.length === 1 && got.errors.length === 1 && c.received().toString('latin1').includes('\r\n'));
    expect(kinds).toEqual(['connection', 'message', 'keepalive', 'message']);
    // from now on everything is refused: the next frame closes the connection unparsed
    refuseFrom = kinds.length;
    await write(c, options('m2') + options('m3'));
    await until(() => c.closed());
    expect(got.requests.map((r) => r.req.callId())).toEqual(['m1']);
    expect(got.closed.map((x) => x.reason)).toEqual(['banned']);
    expect(t.stats().drops.banned).toBe(1);
    expect(t.stats().connections.inbound).toBe(0);
    // a ping is an item too
    refuseFrom = kinds.length + 1;
    const c2 = await connect(ep.port);
    await write(c2, '\r\n\r\n');
    await until(() => c2.closed());
    expect(c2.received().length).toBe(0);
    expect(kinds.slice(-2)).toEqual(['connection', 'keepalive']);
    expect(t.stats().drops.banned).toBe(2);
  });
});

describe('TCP connection limits', () => {
  it('per source IP: excess connections are destroyed and counted; the rest keep working', async () => {
    const { t, got, ep } = await layer({ limits: { ...LIMITS, tcpMaxPerIp: 3 } });
    const clients: Client[] = [];
    for (let i = 0; i < 5; i++) clients.push(await tryConnect(ep.port));
    await until(() => clients.filter((c) => c.closed()).length === 2);
    await until(() => t.stats().connections.inbound === 3);
    expect(t.stats().drops['tcp-per-ip-limit']).toBe(2);
    const open = clients.filter((c) => !c.closed());
    expect(open).toHaveLength(3);
    for (const [i, c] of open.entries()) await write(c, options(`ip-${i}`));
    await until(() => got.requests.length === 3);
    // freeing a slot admits a new connection
    open[0]!.sock.destroy();
    await until(() => t.stats().connections.inbound === 2);
    const again = await tryConnect(ep.port);
    expect(again.closed()).toBe(false);
    await write(again, options('again'));
    await until(() => got.requests.length === 4);
    expect(t.stats().connections.inbound).toBe(3);
  });

  it('a peer opening 10,000 idle connections against a limit of 1,000: at most 1,000 held, still responsive', async () => {
    const LIMIT = 1000;
    const TOTAL = 10_000;
    const BATCH = 500;
    const { t, got, ep } = await layer({ limits: { ...LIMITS, tcpMaxConnections: LIMIT, tcpMaxPerIp: TOTAL } });
    const socks: net.Socket[] = [];
    let closedByServer = 0;
    let maxHeld = 0;
    cleanups.push(() => {
      for (const s of socks) s.destroy();
    });
    for (let opened = 0; opened < TOTAL; opened += BATCH) {
      const batch: Array<Promise<void>> = [];
      for (let i = 0; i < BATCH; i++) {
        batch.push(
          new Promise<void>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: ep.port });
            socks.push(s);
            s.on('error', () => undefined);
            s.once('connect', () => resolve());
            s.once('close', () => {
              closedByServer++;
              resolve();
            });
          }),
        );
      }
      await Promise.all(batch);
      // let the server take every connection of the batch off its accept queue before the next batch
      await until(() => t.stats().connections.inbound + t.stats().drops['tcp-limit'] === opened + BATCH);
      maxHeld = Math.max(maxHeld, t.stats().connections.inbound);
    }
    await until(() => closedByServer + t.stats().connections.inbound === TOTAL);
    const s = t.stats();
    expect(s.connections.inbound).toBe(LIMIT);
    expect(maxHeld).toBeLessThanOrEqual(LIMIT);
    expect(closedByServer).toBe(TOTAL - LIMIT);
    expect(s.drops['tcp-limit']).toBe(TOTAL - LIMIT);

    // responsive: a held connection is served ...
    const held = socks.find((x) => !x.destroyed && x.readyState === 'open')!;
    held.write(options('held'));
    await until(() => got.requests.some((r) => r.req.callId() === 'held'));
    // ... and so is UDP
    const udpEp = t.endpointFor('udp', 4)!;
    const dgram = await import('node:dgram');
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
    u.send(options('udp-while-full', 'SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKu'), udpEp.port, '127.0.0.1');
    await until(() => got.requests.some((r) => r.req.callId() === 'udp-while-full'));
    u.close();

    for (const x of socks) x.destroy();
    await until(() => t.stats().connections.total === 0);
    expect(t.stats().connectionsClosed).toBe(t.stats().connectionsOpened);
  });
});

/** poll `pred` every 10 ms for at most `ms`; rejects naming `what` (bounded, unlike `until`). */
async function waitUntil(pred: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('TCP message deadline (tcpMsgTimeoutMs, like Kamailio tcp_msg_read_timeout)', () => {
  const deadline = { ...LIMITS, tcpIdleTimeoutMs: 60_000, tcpMsgTimeoutMs: 300 };

  it('a slowloris sender trickling one byte at a time (each byte resets the idle timer) is closed and counted', async () => {
    const { t, got, ep } = await layer({ limits: deadline });
    const c = await connect(ep.port);
    const msg = Buffer.from(options('slow', undefined, `X-Pad: ${'p'.repeat(2000)}\r\n`), 'latin1');
    let sent = 0;
    // one byte every 20 ms: the message would take > 40 s; the bound is 200 bytes (4 s)
    while (!c.closed() && sent < 200) {
      await write(c, msg.subarray(sent, sent + 1)).catch(() => undefined);
      sent++;
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitUntil(() => c.closed(), 10_000, 'the slow connection to be closed');
    await waitUntil(() => got.closed.length === 1, 5_000, 'the close to be reported');
    expect(got.closed.map((x) => x.reason)).toEqual(['msg-timeout']);
    expect(t.stats().drops['tcp-msg-timeout']).toBe(1);
    expect(got.requests).toHaveLength(0);
    expect(sent).toBeLessThan(200);
  });

  it('after a complete message and keep-alives, the next message trickled byte by byte is closed at its deadline', async () => {
    const { t, got, ep } = await layer({ limits: deadline });
    const c = await connect(ep.port);
    await write(c, options('whole'));
    await waitUntil(() => got.requests.length === 1, 5_000, 'the whole request');
    for (let i = 0; i < 5; i++) {
      await write(c, '\r\n\r\n');
      await new Promise((r) => setTimeout(r, 100));
    }
    const msg = Buffer.from(options('slow2', undefined, `X-Pad: ${'p'.repeat(2000)}\r\n`), 'latin1');
    let sent = 0;
    while (!c.closed() && sent < 200) {
      await write(c, msg.subarray(sent, sent + 1)).catch(() => undefined);
      sent++;
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitUntil(() => got.closed.length === 1, 10_000, 'the close to be reported');
    expect(got.closed.map((x) => x.reason)).toEqual(['msg-timeout']);
    expect(t.stats().drops['tcp-msg-timeout']).toBe(1);
    expect(got.requests).toHaveLength(1);
    expect(sent).toBeGreaterThan(1);
    expect(sent).toBeLessThan(200);
  });

  it('a fresh connection that sends nothing is closed at the deadline, long before the idle timeout', async () => {
    const { t, got, ep } = await layer({ limits: deadline });
    const c = await connect(ep.port);
    await waitUntil(() => c.closed(), 10_000, 'the silent connection to be closed');
    await waitUntil(() => got.closed.length === 1, 5_000, 'the close to be reported');
    expect(got.closed.map((x) => x.reason)).toEqual(['msg-timeout']);
    expect(t.stats().drops['tcp-msg-timeout']).toBe(1);
  });

  it('a client sending whole messages and CRLF keep-alives stays connected well past the deadline', async () => {
    const { t, got, ep } = await layer({ limits: deadline });
    const c = await connect(ep.port);
    await write(c, options('first'));
    await waitUntil(() => got.requests.length === 1, 5_000, 'the first request');
    // 15 keep-alives 100 ms apart: 1.5 s, five times the deadline; each one gets its pong
    for (let i = 0; i < 15; i++) {
      await write(c, '\r\n\r\n');
      await new Promise((r) => setTimeout(r, 100));
    }
    // a message split in two segments, completed within the deadline
    const second = options('second');
    await write(c, second.slice(0, 40));
    await new Promise((r) => setTimeout(r, 50));
    await write(c, second.slice(40));
    await waitUntil(() => got.requests.length === 2, 5_000, 'the second request');
    expect(c.closed()).toBe(false);
    expect(t.isConnectionOpen(got.requests[1]!.src.connectionId!)).toBe(true);
    expect(got.requests[1]!.src.connectionId).toBe(got.requests[0]!.src.connectionId);
    expect(c.received().toString('latin1')).toBe('\r\n'.repeat(15));
    expect(got.closed).toEqual([]);
    expect(t.stats().drops['tcp-msg-timeout']).toBe(0);
  });
});
