/**
 * src/transport/tls.ts over real TLS sockets on 127.0.0.1 (ephemeral ports), certificates made by
 * openssl in the test (test/helpers/certs.ts): handshake and SIP both ways, SNI and server
 * verification, client-certificate verification, reload for new handshakes only, handshake
 * timeout, the TCP connection limits.
 */
import { X509Certificate } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Counters, type TransportLog } from '../../src/transport/common.js';
import type { TcpLimits } from '../../src/transport/tcp.js';
import { TlsContexts, TlsMaterialError, type TlsMaterial, type TlsSettings } from '../../src/transport/tls-context.js';
import { TlsTransport } from '../../src/transport/tls.js';
import { createTransportLayer, responseTarget, type SipTransportLayer, type Source } from '../../src/transport/index.js';
import { parseMessage, SipResponse as SipResponseClass, type SipRequest, type SipResponse } from '../../src/sip/index.js';

function parseResponse(b: Buffer): SipResponse {
  const m = parseMessage(b);
  if (!(m instanceof SipResponseClass)) throw new Error('not a response');
  return m;
}
import type { ConnectionInfo, TransportContext } from '../../src/transport/transport.js';
import { TransportError, type LocalEndpoint, type TransportName } from '../../src/transport/types.js';
import { makePki, type CertFiles, type TestPki } from '../helpers/certs.js';

const LIMITS: TcpLimits = {
  maxMessageSize: 65536,
  tcpMaxConnections: 100,
  tcpMaxPerIp: 100,
  tcpIdleTimeoutMs: 60_000,
  tcpMaxBuffer: 131072,
  tcpConnectTimeoutMs: 5000,
};

const SETTINGS: TlsSettings = { verifyClient: false, verifyServer: true, minVersion: 'TLSv1.2', handshakeTimeoutMs: 5000 };

let pki: TestPki;
let server: CertFiles;
let server2: CertFiles;
let client: CertFiles;
let rogue: CertFiles;
beforeAll(() => {
  pki = makePki();
  server = pki.issue('server', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  server2 = pki.issue('server2', 'sip2.test', ['IP:127.0.0.1', 'DNS:sip.test']);
  client = pki.issue('client', 'trunk.test', ['DNS:trunk.test'], 'client');
  rogue = pki.selfSigned('rogue', 'sip.test', ['IP:127.0.0.1', 'DNS:sip.test']);
});
afterAll(() => pki.cleanup());

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Got {
  messages: Array<{ text: string; address: string; port: number; connectionId: number | undefined; transport: TransportName }>;
  closed: Array<{ conn: ConnectionInfo; reason: string }>;
  waiters: Array<() => void>;
}

function context(got: Got, log: TransportLog = () => undefined): { ctx: TransportContext; counters: Counters } {
  const counters = new Counters();
  let id = 100;
  const wake = (): void => {
    for (const w of got.waiters.splice(0)) w();
  };
  const ctx: TransportContext = {
    name: 'tls',
    log,
    limits: { ...LIMITS, maxHeaders: 256, maxHeaderLine: 8192, maxVias: 70 },
    options: {},
    counters,
    nextConnectionId: () => ++id,
    admit: () => true,
    message: (data, transport, address, port, _local, connectionId) => {
      got.messages.push({ text: data.toString('latin1'), address, port, connectionId, transport });
      wake();
    },
    framingError: () => undefined,
    closed: (conn, reason) => {
      got.closed.push({ conn, reason });
      wake();
    },
  };
  return { ctx, counters };
}

/** wait until `cond` holds (bounded by the test timeout, re-checked on every event). */
async function until(got: Got, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise<void>((r) => got.waiters.push(r));
  if (!cond()) throw new Error('condition never held');
}

async function node(material: TlsMaterial, settings: Partial<TlsSettings> = {}, limits: Partial<TcpLimits> = {}): Promise<{ t: TlsTransport; got: Got; ep: LocalEndpoint; counters: Counters; contexts: TlsContexts }> {
  const got: Got = { messages: [], closed: [], waiters: [] };
  const { ctx, counters } = context(got);
  const contexts = new TlsContexts(material, { ...SETTINGS, ...settings });
  const t = new TlsTransport(ctx, { limits: { ...LIMITS, ...limits }, contexts });
  const ep = await t.listen('127.0.0.1', 0, undefined);
  cleanups.push(() => t.close());
  return { t, got, ep, counters, contexts };
}

const sip = (method: string, n: number): Buffer =>
  Buffer.from(`${method} sip:bob@sip.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK${n}\r\nCall-ID: c${n}\r\nCSeq: 1 ${method}\r\nContent-Length: 0\r\n\r\n`, 'latin1');
const resp = (n: number): Buffer => Buffer.from(`SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1;branch=z9hG4bK${n}\r\nCall-ID: c${n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`, 'latin1');

const mat = (c: CertFiles, ca: string | undefined = pki.ca.certPem): TlsMaterial => ({ cert: c.certPem, key: c.keyPem, ca });

/** the certificate a fresh TLS client sees from ep (fingerprint), via a raw tls.connect. */
function peerFingerprint(ep: LocalEndpoint): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: ep.port, ca: pki.ca.certPem, servername: 'sip.test' }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

const fingerprint = (c: CertFiles): string => new X509Certificate(c.certPem).fingerprint256;

describe('TLS transport', () => {
  it('handshake, then a request one way and the response back on the same connection; endpoints and connections say tls', async () => {
    const a = await node(mat(server));
    const b = await node(mat(client));
    expect(a.ep.transport).toBe('tls');
    await b.t.send(sip('OPTIONS', 1), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 1);
    const m = a.got.messages[0]!;
    expect(m.transport).toBe('tls');
    expect(m.text).toContain('OPTIONS sip:bob@sip.test SIP/2.0');
    expect(m.connectionId).toBeGreaterThan(100);
    expect(a.t.connections()).toEqual([expect.objectContaining({ id: m.connectionId, transport: 'tls', direction: 'in' })]);
    await a.t.send(resp(1), m.address, m.port, m.connectionId, undefined);
    await until(b.got, () => b.got.messages.length === 1);
    expect(b.got.messages[0]!.text).toMatch(/^SIP\/2\.0 200 OK/);
    // the outbound connection is reused for the next request (one connection each side)
    await b.t.send(sip('OPTIONS', 2), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 2);
    expect(a.got.messages[1]!.connectionId).toBe(m.connectionId);
    expect(b.t.connectionCounts()).toEqual({ total: 1, inbound: 0, outbound: 1 });
    expect(a.counters.drops['tls-handshake']).toBe(0);
  });

  it('SNI: a target given by name is verified against that name; a name the certificate lacks fails the send (counted, no connection)', async () => {
    const a = await node(mat(server));
    const b = await node(mat(client));
    await b.t.send(sip('OPTIONS', 3), '127.0.0.1', a.ep.port, undefined, b.ep, 'sip.test');
    await until(a.got, () => a.got.messages.length === 1);
    const c = await node(mat(client));
    const err = await c.t.send(sip('OPTIONS', 4), '127.0.0.1', a.ep.port, undefined, c.ep, 'other.test').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).kind).toBe('unreachable');
    expect((err as TransportError).message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(c.counters.drops['tls-handshake']).toBe(1);
    expect(c.t.connectionCounts().total).toBe(0);
  });

  it('outbound: an untrusted (self-signed) server certificate fails the send; with verify_server off it is accepted', async () => {
    const evil = await node(mat(rogue));
    const b = await node(mat(client));
    const err = await b.t.send(sip('OPTIONS', 5), '127.0.0.1', evil.ep.port, undefined, b.ep).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).message).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY/);
    expect(b.counters.drops['tls-handshake']).toBe(1);
    expect(evil.got.messages).toHaveLength(0);
    const lax = await node(mat(client), { verifyServer: false });
    await lax.t.send(sip('OPTIONS', 6), '127.0.0.1', evil.ep.port, undefined, lax.ep);
    await until(evil.got, () => evil.got.messages.length === 1);
  });

  it('verify_client: a client certificate from the CA is accepted; a self-signed one and none are refused (counted, nothing delivered)', async () => {
    const a = await node(mat(server), { verifyClient: true });
    const good = await node(mat(client));
    await good.t.send(sip('OPTIONS', 7), '127.0.0.1', a.ep.port, undefined, good.ep);
    await until(a.got, () => a.got.messages.length === 1);

    const bad = await node(mat(rogue));
    // TLS 1.3: the client sees its handshake done before the server checks its certificate, so the
    // send may resolve; the server must close the connection without delivering the message
    await bad.t.send(sip('OPTIONS', 8), '127.0.0.1', a.ep.port, undefined, bad.ep).catch(() => undefined);
    await until(a.got, () => a.got.closed.some((c) => c.reason === 'tls-client-cert'));
    expect(a.counters.drops['tls-handshake']).toBe(1);

    await new Promise<void>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: a.ep.port, ca: pki.ca.certPem, servername: 'sip.test' });
      s.on('secureConnect', () => s.write(sip('OPTIONS', 9)));
      s.on('error', () => undefined);
      s.on('close', () => resolve());
    });
    await until(a.got, () => a.counters.drops['tls-handshake'] === 2);
    expect(a.got.messages).toHaveLength(1);
    expect(a.t.connectionCounts()).toEqual({ total: 1, inbound: 1, outbound: 0 });
  });

  it('reload: new handshakes get the new certificate, an established connection keeps working; a bad new certificate keeps the old one', async () => {
    const a = await node(mat(server));
    const b = await node(mat(client));
    await b.t.send(sip('OPTIONS', 10), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 1);
    const connId = a.got.messages[0]!.connectionId;
    expect(await peerFingerprint(a.ep)).toBe(fingerprint(server));

    expect(a.contexts.reload(mat(server2))).toEqual({ ok: true });
    expect(await peerFingerprint(a.ep)).toBe(fingerprint(server2));
    // the connection made before the reload still carries messages both ways
    await b.t.send(sip('OPTIONS', 11), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 2);
    expect(a.got.messages[1]!.connectionId).toBe(connId);
    await a.t.send(resp(11), '127.0.0.1', 0, connId, undefined);
    await until(b.got, () => b.got.messages.length === 1);
    // (only the fingerprint probes' connections closed)
    expect(a.got.closed.map((c) => c.conn.id)).not.toContain(connId);
    expect(a.t.isOpen(connId!)).toBe(true);

    // key of another certificate: refused, the old (server2) context stays
    const r = a.contexts.reload({ cert: server.certPem, key: server2.keyPem, ca: pki.ca.certPem });
    expect(r.ok).toBe(false);
    expect(await peerFingerprint(a.ep)).toBe(fingerprint(server2));
    expect(a.contexts.generation).toBe(1);
  });

  it('a client that never speaks TLS is closed at the handshake timeout (counted); its slot is freed', async () => {
    const a = await node(mat(server), { handshakeTimeoutMs: 200 }, { tcpMaxPerIp: 1 });
    const raw = net.connect(a.ep.port, '127.0.0.1');
    raw.on('error', () => undefined);
    const ended = new Promise<void>((r) => raw.on('close', () => r()));
    await until(a.got, () => a.got.closed.length === 1);
    expect(a.got.closed[0]!.reason).toBe('tls-handshake-timeout');
    expect(a.counters.drops['tls-handshake']).toBe(1);
    await ended;
    expect(a.t.connectionCounts().total).toBe(0);
    // the per-IP slot is free again: a real client gets in
    const b = await node(mat(client));
    await b.t.send(sip('OPTIONS', 12), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 1);
  });

  it('connection limits are TCP’s: a second connection from the same IP over tcp_max_per_ip is refused before any handshake', async () => {
    const a = await node(mat(server), {}, { tcpMaxPerIp: 1 });
    const b = await node(mat(client));
    await b.t.send(sip('OPTIONS', 13), '127.0.0.1', a.ep.port, undefined, b.ep);
    await until(a.got, () => a.got.messages.length === 1);
    const c = await node(mat(client));
    const err = await c.t.send(sip('OPTIONS', 14), '127.0.0.1', a.ep.port, undefined, c.ep).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TransportError);
    expect(a.counters.drops['tcp-per-ip-limit']).toBe(1);
    expect(a.counters.drops['tls-handshake']).toBe(0);
    expect(a.t.connectionCounts().inbound).toBe(1);
  });
});

describe('TLS settings', () => {
  it('min_version TLSv1.3 refuses a client limited to TLS 1.2 (counted); TLS 1.2 is the default minimum', async () => {
    const strict = await node(mat(server), { minVersion: 'TLSv1.3' });
    const code = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: strict.ep.port, ca: pki.ca.certPem, servername: 'sip.test', maxVersion: 'TLSv1.2' });
      s.on('secureConnect', () => resolve('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(code).toMatch(/ALERT|VERSION/);
    await until(strict.got, () => strict.counters.drops['tls-handshake'] === 1);
    const dflt = await node(mat(server));
    const proto = await new Promise<string | null>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: dflt.ep.port, ca: pki.ca.certPem, servername: 'sip.test', maxVersion: 'TLSv1.2' }, () => {
        resolve(s.getProtocol());
        s.end();
      });
      s.on('error', reject);
    });
    expect(proto).toBe('TLSv1.2');
    const old = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: dflt.ep.port, ca: pki.ca.certPem, servername: 'sip.test', minVersion: 'TLSv1', maxVersion: 'TLSv1.1' });
      s.on('secureConnect', () => resolve('connected'));
      s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(old).not.toBe('connected');
  });

  it('a cipher list OpenSSL does not know, or a key that does not match, is a TlsMaterialError (one line)', () => {
    expect(() => new TlsContexts(mat(server), { ...SETTINGS, ciphers: 'NOT-A-CIPHER' })).toThrow(TlsMaterialError);
    expect(() => new TlsContexts({ cert: server.certPem, key: client.keyPem }, SETTINGS)).toThrow(/key values mismatch/);
    let err: unknown;
    try {
      new TlsContexts({ cert: 'garbage', key: server.keyPem }, SETTINGS);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TlsMaterialError);
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('TLS in the transport layer (createTransportLayer)', () => {
  const limits = { ...LIMITS, maxHeaders: 256, maxHeaderLine: 8192, maxVias: 70 };

  async function layer(material: CertFiles, events: { request?: (req: SipRequest, src: Source, t: SipTransportLayer) => void; response?: (res: SipResponse, src: Source) => void } = {}): Promise<SipTransportLayer> {
    const t: SipTransportLayer = createTransportLayer({
      listen: [
        { transport: 'tls', host: '127.0.0.1', port: 0 },
        { transport: 'tcp', host: '127.0.0.1', port: 0 },
      ],
      limits,
      transportOptions: { tls: new TlsContexts(mat(material), SETTINGS) },
      // 'sip.test' is this host: the name is the SNI and the certificate name checked
      resolver: async (host) => (host === 'sip.test' ? [{ address: '127.0.0.1', family: 4 }] : []),
      events: {
        request: (req, src) => events.request?.(req, src, t),
        response: (res, src) => events.response?.(res, src),
        parseError: () => undefined,
      },
    });
    await t.start();
    cleanups.push(() => t.close());
    return t;
  }

  it('a request over TLS by host name reaches the other layer as transport tls; its response comes back on the same connection; ids are unique across tcp and tls', async () => {
    const got: Array<{ req: SipRequest; src: Source }> = [];
    const sl = await layer(server, {
      request: (req, src, t) => {
        got.push({ req, src });
        const res = Buffer.from(`SIP/2.0 200 OK\r\n${req.headerValues('via').map((v) => `Via: ${v}`).join('\r\n')}\r\nCall-ID: ${req.callId()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`, 'latin1');
        void t.send(res, responseTarget(parseResponse(res), src));
      },
    });
    const responses: Array<{ src: Source }> = [];
    let wake: (() => void) | undefined;
    const cl = await layer(client, { response: (_res, src) => { responses.push({ src }); wake?.(); } });
    const tlsEp = sl.endpoints().find((e) => e.transport === 'tls')!;
    const tcpEp = sl.endpoints().find((e) => e.transport === 'tcp')!;
    await cl.send(sip('OPTIONS', 20), { transport: 'tls', address: 'sip.test', port: tlsEp.port });
    await cl.send(sip('OPTIONS', 21), { transport: 'tcp', address: '127.0.0.1', port: tcpEp.port });
    for (let i = 0; i < 100 && responses.length < 2; i++) await new Promise<void>((r) => (wake = r));
    expect(got.map((g) => g.src.transport).sort()).toEqual(['tcp', 'tls']);
    const ids = got.map((g) => g.src.connectionId);
    expect(new Set(ids).size).toBe(2);
    expect(responses.map((r) => r.src.transport).sort()).toEqual(['tcp', 'tls']);
    expect(cl.connections()).toHaveLength(2);
    expect(sl.stats().connections).toEqual({ total: 2, inbound: 2, outbound: 0 });
  });

  it('a tls transport without TLS settings refuses to send (no-listener) and dials nothing: never cleartext', async () => {
    let accepted = 0;
    const plain = net.createServer((sock) => {
      accepted++;
      sock.destroy();
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => plain.close(() => r())));
    const port = (plain.address() as net.AddressInfo).port;
    const got: Got = { messages: [], closed: [], waiters: [] };
    const { ctx } = context(got);
    const t = new TlsTransport(ctx, { limits: LIMITS, contexts: undefined });
    cleanups.push(() => t.close());
    // as the layer calls it for an outbound request: with a local endpoint to send from
    const local: LocalEndpoint = { transport: 'tls', address: '127.0.0.1', port: 5061, advertise: '127.0.0.1' };
    const err = await t.send(sip('OPTIONS', 30), '127.0.0.1', port, undefined, local).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    expect((err as TransportError).kind).toBe('no-listener');
    // a connection attempt would have been accepted by now if one had been made
    await new Promise<void>((r) => setImmediate(r));
    expect(accepted).toBe(0);
    expect(t.connections()).toEqual([]);
  });

  it('a tls listener without TLS settings does not start (one error)', async () => {
    const t = createTransportLayer({ listen: [{ transport: 'tls', host: '127.0.0.1', port: 0 }], limits, events: { request: () => undefined, response: () => undefined, parseError: () => undefined } });
    await expect(t.start()).rejects.toThrow('cannot listen on tls:127.0.0.1:0: no TLS certificate settings');
  });
});
