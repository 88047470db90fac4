/**
 * src/transport/ws.ts over real sockets on 127.0.0.1 with a real `ws` client: the RFC 7118 handshake
 * (sip sub-protocol, Origin allow-list, path), one message per frame, sending back on the connection,
 * no dialling, frame-size limit, ping keep-alive, limits, handshake timeout, admission, wss.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { Counters } from '../../src/transport/common.js';
import type { AdmitWhat, ConnectionInfo, Transport, TransportContext, TransportLimits } from '../../src/transport/transport.js';
import { TransportError, type LocalEndpoint, type TransportName } from '../../src/transport/types.js';
import { wsTransport, wssTransport, type WsOptions } from '../../src/transport/ws.js';

const OPTS: WsOptions = { maxMessageSize: 4096, maxConnections: 50, maxPerIp: 50, handshakeTimeoutMs: 5000, pingIntervalMs: 0 };

interface Got {
  messages: Array<{ data: Buffer; transport: TransportName; address: string; port: number; local: LocalEndpoint; connectionId: number | undefined }>;
  closed: Array<{ conn: ConnectionInfo; reason: string }>;
  admits: Array<{ what: AdmitWhat; address: string }>;
  counters: Counters;
  waiters: Array<() => void>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const LIMITS: TransportLimits = { maxMessageSize: 65536, maxHeaders: 256, maxHeaderLine: 8192, maxVias: 70, tcpMaxConnections: 10, tcpMaxPerIp: 10, tcpIdleTimeoutMs: 60_000, tcpMaxBuffer: 131072 };

function context(admit: (what: AdmitWhat) => boolean = () => true, name: TransportName = 'ws'): { ctx: TransportContext; got: Got } {
  let id = 100;
  const got: Got = { messages: [], closed: [], admits: [], counters: new Counters(), waiters: [] };
  const wake = (): void => {
    for (const w of got.waiters.splice(0)) w();
  };
  const ctx: TransportContext = {
    name,
    limits: LIMITS,
    options: {},
    log: () => undefined,
    counters: got.counters,
    nextConnectionId: () => ++id,
    admit: (_t, address, _p, what) => {
      got.admits.push({ what, address });
      return admit(what);
    },
    message: (data, transport, address, port, local, connectionId) => {
      got.messages.push({ data, transport, address, port, local, connectionId });
      wake();
    },
    framingError: () => undefined,
    closed: (conn, reason) => {
      got.closed.push({ conn, reason });
      wake();
    },
  };
  return { ctx, got };
}

/** Wait (bounded by the test timeout) until `cond` holds; re-checked on every context event. */
async function until(got: Got, cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise<void>((r) => got.waiters.push(r));
}

async function start(opts: Partial<WsOptions> = {}, admit?: (what: AdmitWhat) => boolean): Promise<{ t: Transport; got: Got; ep: LocalEndpoint; url: string }> {
  const { ctx, got } = context(admit);
  const t = wsTransport({ ...OPTS, ...opts })(ctx);
  cleanups.push(() => t.close());
  const ep = await t.listen('127.0.0.1', 0, undefined);
  return { t, got, ep, url: `ws://127.0.0.1:${ep.port}` };
}

/** Open a client; resolves with it once open, or with the HTTP status of a refused handshake. */
function open(url: string, protocols: string | string[] | undefined = 'sip', headers: Record<string, string> = {}, extra: WebSocket.ClientOptions = {}): Promise<{ ws?: WebSocket; status?: number; error?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, protocols, { headers, ...extra });
    cleanups.push(() => ws.terminate());
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      resolve({ status: res.statusCode });
      ws.terminate();
    });
    ws.once('error', (e) => resolve({ error: e.message }));
  });
}

const closedEvent = (ws: WebSocket): Promise<number> => new Promise((r) => ws.once('close', (code) => r(code)));
const nextMessage = (ws: WebSocket): Promise<{ data: Buffer; binary: boolean }> =>
  new Promise((r) => ws.once('message', (data, binary) => r({ data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), binary })));

const REGISTER = (n: number): string =>
  `REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/WS abc.invalid;branch=z9hG4bK-${n}\r\nFrom: <sip:a@example.test>;tag=1\r\nTo: <sip:a@example.test>\r\nCall-ID: c${n}@abc.invalid\r\nCSeq: ${n} REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`;

describe('ws transport: handshake', () => {
  it('accepts a handshake asking for sip (among others) and answers with the sip sub-protocol', async () => {
    const { t, url, ep } = await start();
    expect(ep.transport).toBe('ws');
    const r = await open(url, ['foo', 'sip']);
    expect(r.ws?.protocol).toBe('sip');
    expect(t.connections()).toHaveLength(1);
    expect(t.connections()[0]).toMatchObject({ transport: 'ws', direction: 'in', remoteAddress: '127.0.0.1' });
  });

  it('refuses a handshake without the sip sub-protocol with 400 (and one asking for another only)', async () => {
    const { t, got, url } = await start();
    expect(await open(url, [])).toEqual({ status: 400 });
    expect((await open(url, 'xmpp')).status).toBe(400);
    expect(t.connections()).toHaveLength(0);
    expect(got.counters.drops['ws-handshake']).toBe(2);
  });

  it('accepts any path unless one is configured, then only that one (404 otherwise)', async () => {
    const any = await start();
    expect((await open(`${any.url}/some/where?x=1`)).ws).toBeDefined();
    const only = await start({ path: '/ws' });
    expect((await open(`${only.url}/ws`)).ws).toBeDefined();
    expect((await open(`${only.url}/other`)).status).toBe(404);
    expect((await open(`${only.url}/`)).status).toBe(404);
  });

  it('Origin allow-list: a listed Origin is accepted (case-insensitively), an unlisted or missing one gets 403', async () => {
    const { url, t } = await start({ origins: ['https://phone.example.com', 'http://127.0.0.1:8080'] });
    expect((await open(url, 'sip', { Origin: 'https://phone.example.com' })).ws).toBeDefined();
    expect((await open(url, 'sip', { Origin: 'HTTPS://Phone.Example.com' })).ws).toBeDefined();
    expect((await open(url, 'sip', { Origin: 'http://127.0.0.1:8080' })).ws).toBeDefined();
    expect((await open(url, 'sip', { Origin: 'https://evil.example.net' })).status).toBe(403);
    expect((await open(url, 'sip', {})).status).toBe(403);
    expect(t.connections()).toHaveLength(3);
  });

  it('an empty allow-list accepts any Origin', async () => {
    const { url } = await start({ origins: [] });
    expect((await open(url, 'sip', { Origin: 'https://anything.example.org' })).ws).toBeDefined();
  });

  it('a plain HTTP request (no upgrade) gets 426', async () => {
    const { ep } = await start();
    const res = await fetch(`http://127.0.0.1:${ep.port}/`);
    expect(res.status).toBe(426);
  });
});

describe('ws transport: messages', () => {
  it('delivers one SIP message per frame (text and binary) with the connection id', async () => {
    const { t, got, url, ep } = await start();
    const { ws } = await open(url);
    ws!.send(REGISTER(1));
    ws!.send(Buffer.from(REGISTER(2)), { binary: true });
    await until(got, () => got.messages.length === 2);
    const id = t.connections()[0]!.id;
    expect(got.messages.map((m) => m.data.toString())).toEqual([REGISTER(1), REGISTER(2)]);
    for (const m of got.messages) expect(m).toMatchObject({ transport: 'ws', address: '127.0.0.1', connectionId: id, local: ep });
    expect(got.admits.filter((a) => a.what === 'message')).toHaveLength(2);
    expect(got.admits.filter((a) => a.what === 'connection')).toHaveLength(1);
  });

  it('sends back on the connection by id and by peer address; text frames for UTF-8, binary otherwise', async () => {
    const { t, got, url } = await start();
    const { ws } = await open(url);
    ws!.send(REGISTER(1));
    await until(got, () => got.messages.length === 1);
    const m = got.messages[0]!;
    const reply = Buffer.from('SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n');
    let rx = nextMessage(ws!);
    await t.send(reply, '192.0.2.1', 5060, m.connectionId, undefined);
    expect(await rx).toEqual({ data: reply, binary: false });
    rx = nextMessage(ws!);
    const notUtf8 = Buffer.concat([reply, Buffer.from([0xff, 0xfe])]);
    await t.send(notUtf8, m.address, m.port, undefined, undefined);
    expect(await rx).toEqual({ data: notUtf8, binary: true });
  });

  it('send to a peer without an open connection rejects unreachable (WS cannot dial), and a closed id too', async () => {
    const { t, got, url } = await start();
    await expect(t.send(Buffer.from('x'), '127.0.0.1', 5060, undefined, undefined)).rejects.toMatchObject({ name: 'TransportError', kind: 'unreachable' });
    const { ws } = await open(url);
    ws!.send(REGISTER(1));
    await until(got, () => got.messages.length === 1);
    const m = got.messages[0]!;
    ws!.close();
    await until(got, () => got.closed.length === 1);
    const e = await t.send(Buffer.from('x'), m.address, m.port, m.connectionId, undefined).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(TransportError);
    expect((e as TransportError).kind).toBe('unreachable');
    expect(t.isOpen(m.connectionId!)).toBe(false);
  });

  it('a frame larger than maxMessageSize closes the connection (1009) and is not delivered', async () => {
    const { got, url } = await start({ maxMessageSize: 1000 });
    const { ws } = await open(url);
    const code = closedEvent(ws!);
    ws!.send('A'.repeat(1001));
    expect(await code).toBe(1009);
    await until(got, () => got.closed.length === 1);
    expect(got.closed[0]!.reason).toBe('too-large');
    expect(got.messages).toHaveLength(0);
    expect(got.counters.drops['ws-too-large']).toBe(1);
  });

  it('a frame of exactly maxMessageSize is delivered', async () => {
    const { got, url } = await start({ maxMessageSize: 1000 });
    const { ws } = await open(url);
    ws!.send('A'.repeat(1000));
    await until(got, () => got.messages.length === 1);
    expect(got.messages[0]!.data.length).toBe(1000);
  });

  it('a CRLFCRLF keep-alive frame is answered with CRLF and not delivered as a message', async () => {
    const { got, url } = await start();
    const { ws } = await open(url);
    const rx = nextMessage(ws!);
    ws!.send('\r\n\r\n');
    expect((await rx).data.toString()).toBe('\r\n');
    expect(got.messages).toHaveLength(0);
    expect(got.admits.filter((a) => a.what === 'keepalive')).toHaveLength(1);
  });

  it('reports a closed connection through ctx.closed with its id (client close and closeConnection)', async () => {
    const { t, got, url } = await start();
    const a = (await open(url)).ws!;
    await open(url);
    const [ca, cb] = t.connections();
    a.close();
    await until(got, () => got.closed.length === 1);
    expect(got.closed[0]).toMatchObject({ conn: { id: ca!.id, transport: 'ws' }, reason: 'closed' });
    expect(t.closeConnection(cb!.id, 'flow-gone')).toBe(true);
    await until(got, () => got.closed.length === 2);
    expect(got.closed[1]).toMatchObject({ conn: { id: cb!.id }, reason: 'flow-gone' });
    expect(t.connectionCounts()).toEqual({ total: 0, inbound: 0, outbound: 0 });
    expect(t.closeConnection(cb!.id)).toBe(false);
  });
});

describe('ws transport: keep-alive, limits, admission', () => {
  it('a client that does not answer pings is closed (ping-timeout); one that answers stays open', async () => {
    const { t, got, url } = await start({ pingIntervalMs: 30 });
    const deaf = (await open(url, 'sip', {}, { autoPong: false })).ws!;
    const deafClosed = closedEvent(deaf);
    const alive = (await open(url)).ws!;
    let pings = 0;
    alive.on('ping', () => pings++);
    await until(got, () => got.closed.length === 1);
    expect(got.closed[0]!.reason).toBe('ping-timeout');
    expect(await deafClosed).toBe(1006); // terminated: no close frame
    // the answering client has seen pings across several intervals and is still connected
    await new Promise<void>((r) => {
      const check = (): void => {
        if (pings >= 3) r();
        else alive.once('ping', check);
      };
      check();
    });
    expect(alive.readyState).toBe(WebSocket.OPEN);
    expect(t.connections()).toHaveLength(1);
  });

  it('refuses connections over the per-IP limit and over the total limit (reset, counted)', async () => {
    const perIp = await start({ maxPerIp: 2 });
    expect((await open(perIp.url)).ws).toBeDefined();
    expect((await open(perIp.url)).ws).toBeDefined();
    expect((await open(perIp.url)).error).toBeDefined();
    expect(perIp.got.counters.drops['ws-per-ip-limit']).toBe(1);
    const total = await start({ maxConnections: 1 });
    expect((await open(total.url)).ws).toBeDefined();
    expect((await open(total.url)).error).toBeDefined();
    expect(total.got.counters.drops['ws-limit']).toBe(1);
    expect(total.t.connections()).toHaveLength(1);
  });

  it('a closed connection frees its slot', async () => {
    const { got, url } = await start({ maxPerIp: 1 });
    const a = (await open(url)).ws!;
    a.close();
    await until(got, () => got.closed.length === 1);
    // the raw socket's close follows the WebSocket close: retry until the slot is free (bounded)
    let r: Awaited<ReturnType<typeof open>> = {};
    for (let i = 0; i < 50 && r.ws === undefined; i++) {
      r = await open(url);
      if (r.ws === undefined) await new Promise((res) => setTimeout(res, 20));
    }
    expect(r.ws).toBeDefined();
  });

  it('a TCP connection that never completes the handshake is closed after the handshake timeout', async () => {
    const { got, ep } = await start({ handshakeTimeoutMs: 50 });
    const sock = net.connect(ep.port, '127.0.0.1');
    sock.on('error', () => undefined);
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n'); // never finished
    await new Promise<void>((r) => sock.once('close', () => r()));
    expect(got.counters.drops['ws-handshake-timeout']).toBe(1);
  });

  it('admission: a refused connection is reset; a refused message closes the connection, undelivered', async () => {
    const noConn = await start({}, (what) => what !== 'connection');
    expect((await open(noConn.url)).error).toBeDefined();
    const noMsg = await start({}, (what) => what !== 'message');
    const { ws } = await open(noMsg.url);
    ws!.send(REGISTER(1));
    await until(noMsg.got, () => noMsg.got.closed.length === 1);
    expect(noMsg.got.closed[0]!.reason).toBe('banned');
    expect(noMsg.got.messages).toHaveLength(0);
  });

  it('close() closes every connection (reported as shutdown) and stops listening', async () => {
    const { t, got, url, ep } = await start();
    await open(url);
    await t.close();
    expect(got.closed.map((c) => c.reason)).toEqual(['shutdown']);
    const r = await open(`ws://127.0.0.1:${ep.port}`);
    expect(r.ws).toBeUndefined();
    await t.close();
  });
});

/** Wait until the client has seen `n` pings (event-driven: time passes on the server's ping timer). */
function pings(ws: WebSocket, n: number): Promise<void> {
  let seen = 0;
  return new Promise((r) => {
    const on = (): void => {
      if (++seen >= n) {
        ws.off('ping', on);
        r();
      }
    };
    ws.on('ping', on);
  });
}

function certificate(): { cert: Buffer; key: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'sipd-wss-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) };
}

describe('handshake deadline stops at the upgrade', () => {
  it('ws: an upgraded connection outlives the handshake timeout', async () => {
    const { t, got, url } = await start({ handshakeTimeoutMs: 1500, pingIntervalMs: 400 });
    const { ws } = await open(url);
    await pings(ws!, 5); // past the handshake deadline (2 s of pings against 1.5 s)
    expect(ws!.readyState).toBe(WebSocket.OPEN);
    expect(got.closed).toEqual([]);
    expect(got.counters.drops['ws-handshake-timeout']).toBe(0);
    expect(t.connections()).toHaveLength(1);
  });

  it('wss: an upgraded connection outlives the handshake timeout (the TLS socket is not the accepted one)', async () => {
    const { cert, key } = certificate();
    const { ctx, got } = context(undefined, 'wss');
    const t = wssTransport({ ...OPTS, handshakeTimeoutMs: 1500, pingIntervalMs: 400, tls: { options: { cert, key } } })(ctx);
    cleanups.push(() => t.close());
    const ep = await t.listen('127.0.0.1', 0, undefined);
    const { ws } = await open(`wss://127.0.0.1:${ep.port}`, 'sip', {}, { ca: cert });
    await pings(ws!, 5);
    expect(ws!.readyState).toBe(WebSocket.OPEN);
    expect(got.closed).toEqual([]);
    expect(got.counters.drops['ws-handshake-timeout']).toBe(0);
  });
});

describe('wss transport', () => {
  it('serves the sip sub-protocol over TLS with the material given from outside', async () => {
    const { cert, key } = certificate();
    const { ctx, got } = context(undefined, 'wss');
    const t = wssTransport({ ...OPTS, tls: { options: { cert, key } } })(ctx);
    cleanups.push(() => t.close());
    const ep = await t.listen('127.0.0.1', 0, undefined);
    expect(ep.transport).toBe('wss');
    expect(t.info.secure).toBe(true);
    const { ws } = await open(`wss://127.0.0.1:${ep.port}`, 'sip', {}, { ca: cert });
    expect(ws?.protocol).toBe('sip');
    ws!.send(REGISTER(7));
    await until(got, () => got.messages.length === 1);
    expect(got.messages[0]).toMatchObject({ transport: 'wss', connectionId: t.connections()[0]!.id });
    const rx = nextMessage(ws!);
    await t.send(Buffer.from('SIP/2.0 200 OK\r\n\r\n'), '127.0.0.1', 1, got.messages[0]!.connectionId, undefined);
    expect((await rx).data.toString()).toBe('SIP/2.0 200 OK\r\n\r\n');
  });
});

describe('ws through the transport layer', () => {
  it('a request over WS gets received= on its .invalid Via, and its response goes back on the connection', async () => {
    const { createTransportLayer, responseTarget } = await import('../../src/transport/index.js');
    const { buildResponse } = await import('../../src/sip/index.js');
    const closed: number[] = [];
    const reqs: Array<{ via: string | undefined; src: import('../../src/transport/types.js').Source }> = [];
    let wake: () => void = () => undefined;
    const layer = createTransportLayer({
      listen: [
        { transport: 'udp', host: '127.0.0.1', port: 0 },
        { transport: 'ws', host: '127.0.0.1', port: 0 },
      ],
      limits: LIMITS,
      transportOptions: { ws: { maxConnections: 10, maxPerIp: 10, pingIntervalMs: 0 } },
      events: {
        request: (req, src) => {
          reqs.push({ via: req.headerValues('via')[0], src });
          const res = buildResponse(req, 200);
          void layer.send(res.toBuffer(), responseTarget(res, src));
          wake();
        },
        response: () => undefined,
        parseError: () => undefined,
        connectionClosed: (id) => {
          closed.push(id);
          wake();
        },
      },
    });
    await layer.start();
    cleanups.push(() => layer.close());
    const ep = layer.endpoints().find((e) => e.transport === 'ws')!;
    expect(ep).toBeDefined();
    const { ws } = await open(`ws://127.0.0.1:${ep.port}`);
    const rx = nextMessage(ws!);
    ws!.send(REGISTER(3));
    const res = (await rx).data.toString();
    expect(res).toMatch(/^SIP\/2\.0 200 OK\r\n/);
    expect(res).toContain('Via: SIP/2.0/WS abc.invalid;branch=z9hG4bK-3;received=127.0.0.1');
    expect(reqs[0]!.src).toMatchObject({ transport: 'ws', address: '127.0.0.1', local: ep });
    const id = reqs[0]!.src.connectionId!;
    expect(layer.isConnectionOpen(id)).toBe(true);
    expect(layer.connections().map((c) => c.id)).toContain(id);
    expect(layer.stats().connections.inbound).toBe(1);
    // a request to the browser's address:port goes over its connection; to any other, unreachable
    const rx2 = nextMessage(ws!);
    await layer.send(Buffer.from('OPTIONS sip:a@abc.invalid SIP/2.0\r\n\r\n'), { transport: 'ws', address: '127.0.0.1', port: reqs[0]!.src.port });
    expect((await rx2).data.toString()).toMatch(/^OPTIONS /);
    await expect(layer.send(Buffer.from('x'), { transport: 'ws', address: '127.0.0.1', port: 1 })).rejects.toMatchObject({ kind: 'unreachable' });
    await expect(layer.send(Buffer.from('x'), { transport: 'ws', address: 'abc.invalid', port: 80 })).rejects.toMatchObject({ kind: 'unreachable' });
    expect(layer.closeConnection(id)).toBe(true);
    while (!closed.includes(id)) await new Promise<void>((r) => (wake = r));
    expect(layer.isConnectionOpen(id)).toBe(false);
  });

  const layerWith = async (listen: Array<{ transport: TransportName; host: string; port: number }>, transportOptions: import('../../src/transport/transport.js').TransportOptions, onRequest?: (src: import('../../src/transport/types.js').Source) => void) => {
    const { createTransportLayer } = await import('../../src/transport/index.js');
    const layer = createTransportLayer({
      listen,
      limits: LIMITS,
      transportOptions,
      events: { request: (_req, src) => onRequest?.(src), response: () => undefined, parseError: () => undefined },
    });
    cleanups.push(() => layer.close());
    return layer;
  };

  it('a wss: listener without TLS material fails to start, in one line, and nothing stays bound', async () => {
    const layer = await layerWith(
      [
        { transport: 'udp', host: '127.0.0.1', port: 0 },
        { transport: 'wss', host: '127.0.0.1', port: 0 },
      ],
      { ws: { pingIntervalMs: 0 } },
    );
    const err = await layer.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toBe('cannot listen on wss:127.0.0.1:0: no TLS certificate configured for wss (transportOptions.wss.secureContext)');
    expect(err?.message).not.toContain('\n');
    expect(layer.endpoints()).toEqual([]);
  });

  it('wss from the registry takes its TLS material from transportOptions.wss.secureContext', async () => {
    const tls = await import('node:tls');
    const { cert, key } = certificate();
    const srcs: Array<import('../../src/transport/types.js').Source> = [];
    let wake: () => void = () => undefined;
    let asked = 0;
    const secureContext = () => {
      asked++;
      return tls.createSecureContext({ cert, key });
    };
    const layer = await layerWith([{ transport: 'wss', host: '127.0.0.1', port: 0 }], { ws: { pingIntervalMs: 0 }, wss: { secureContext } }, (src) => {
      srcs.push(src);
      wake();
    });
    await layer.start();
    const ep = layer.endpoints()[0]!;
    expect(ep.transport).toBe('wss');
    const r = await open(`wss://127.0.0.1:${ep.port}`, 'sip', {}, { ca: cert });
    expect(r).toMatchObject({ ws: { protocol: 'sip' } });
    const ws = r.ws;
    ws!.send(REGISTER(9));
    while (srcs.length === 0) await new Promise<void>((r) => (wake = r));
    expect(srcs[0]).toMatchObject({ transport: 'wss', address: '127.0.0.1', local: ep });
    expect(layer.isConnectionOpen(srcs[0]!.connectionId!)).toBe(true);
    // the getter is asked for every new connection (a reloaded context reaches the next handshake)
    const second = await open(`wss://127.0.0.1:${ep.port}`, 'sip', {}, { ca: cert });
    expect(second.ws?.protocol).toBe('sip');
    expect(asked).toBe(2);
  });

  it('connection ids come from the layer: a TCP and a WS connection get distinct ids of one sequence', async () => {
    const srcs: Array<import('../../src/transport/types.js').Source> = [];
    let wake: () => void = () => undefined;
    const layer = await layerWith(
      [
        { transport: 'tcp', host: '127.0.0.1', port: 0 },
        { transport: 'ws', host: '127.0.0.1', port: 0 },
      ],
      { ws: { pingIntervalMs: 0 } },
      (src) => {
        srcs.push(src);
        wake();
      },
    );
    await layer.start();
    const tcpEp = layer.endpoints().find((e) => e.transport === 'tcp')!;
    const wsEp = layer.endpoints().find((e) => e.transport === 'ws')!;
    const sock = net.connect(tcpEp.port, '127.0.0.1');
    cleanups.push(() => void sock.destroy());
    sock.write(REGISTER(1).replace('SIP/2.0/WS abc.invalid', 'SIP/2.0/TCP 127.0.0.1'));
    while (srcs.length < 1) await new Promise<void>((r) => (wake = r));
    const { ws } = await open(`ws://127.0.0.1:${wsEp.port}`);
    ws!.send(REGISTER(2));
    while (srcs.length < 2) await new Promise<void>((r) => (wake = r));
    expect(srcs.map((s) => [s.transport, s.connectionId])).toEqual([
      ['tcp', 1],
      ['ws', 2],
    ]);
    expect(layer.connections().map((c) => c.id).sort()).toEqual([1, 2]);
  });
});
