/** src/transport over real UDP sockets on 127.0.0.1 (ephemeral ports). */
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { buildResponse, parseMessage, SipRequest, SipResponse, type SipParseError } from '../../src/sip/index.js';
import {
  createTransportLayer,
  ListenError,
  responseTarget,
  type LocalEndpoint,
  type SipTransportLayer,
  type Source,
  type TransportLayerOptions,
} from '../../src/transport/index.js';
import { UdpListener } from '../../src/transport/udp.js';

const LIMITS = {
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
  errors: Array<{ err: SipParseError; src: Source; raw: Buffer }>;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function layer(extra: Partial<TransportLayerOptions> = {}, onRequest?: (req: SipRequest, src: Source, t: SipTransportLayer) => void): Promise<{ t: SipTransportLayer; got: Got; ep: LocalEndpoint }> {
  const got: Got = { requests: [], responses: [], errors: [] };
  const t: SipTransportLayer = createTransportLayer({
    listen: [{ transport: 'udp', host: '127.0.0.1', port: 0 }],
    limits: LIMITS,
    events: {
      request: (req, src) => {
        got.requests.push({ req, src });
        onRequest?.(req, src, t);
      },
      response: (res, src) => got.responses.push({ res, src }),
      parseError: (err, src, raw) => got.errors.push({ err, src, raw }),
    },
    ...extra,
  });
  await t.start();
  cleanups.push(() => t.close());
  return { t, got, ep: t.endpoints()[0]! };
}

interface Peer {
  sock: dgram.Socket;
  port: number;
  inbox: Array<{ data: Buffer; port: number }>;
  send(text: string, port: number): void;
}

async function peer(): Promise<Peer> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  const inbox: Peer['inbox'] = [];
  sock.on('message', (data, rinfo) => inbox.push({ data, port: rinfo.port }));
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { sock, port: sock.address().port, inbox, send: (text, port) => sock.send(Buffer.from(text, 'latin1'), port, '127.0.0.1') };
}

/** wait until `pred` holds; the test timeout is the guard (no timed assertion). */
async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

function options(via: string, callId = 'c1@test', extra = ''): string {
  return (
    `OPTIONS sip:proxy@127.0.0.1 SIP/2.0\r\nVia: ${via}\r\nMax-Forwards: 70\r\nFrom: <sip:a@test>;tag=ft\r\nTo: <sip:proxy@127.0.0.1>\r\n` +
    `Call-ID: ${callId}\r\nCSeq: 1 OPTIONS\r\n${extra}Content-Length: 0\r\n\r\n`
  );
}

describe('UDP transport', () => {
  it('binds port 0 and reports the real port', async () => {
    const { t, ep } = await layer();
    expect(ep.transport).toBe('udp');
    expect(ep.address).toBe('127.0.0.1');
    expect(ep.port).toBeGreaterThan(0);
    expect(ep.advertise).toBe('127.0.0.1');
    expect(t.endpointFor('udp', 4)).toBe(ep);
    expect(t.endpointFor('udp', 6)).toBeUndefined();
    expect(t.endpointFor('tcp', 4)).toBeUndefined();
  });

  it('uses the configured advertise host', async () => {
    const { ep } = await layer({ advertise: 'sip.example.com' });
    expect(ep.advertise).toBe('sip.example.com');
  });

  it('EADDRINUSE rejects start() with an error naming the address', async () => {
    const { ep } = await layer();
    const t2 = createTransportLayer({
      listen: [{ transport: 'udp', host: '127.0.0.1', port: ep.port }],
      limits: LIMITS,
      events: { request: () => undefined, response: () => undefined, parseError: () => undefined },
    });
    const err: unknown = await t2.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ListenError);
    expect((err as ListenError).code).toBe('EADDRINUSE');
    expect((err as Error).message).toContain(`udp:127.0.0.1:${ep.port}`);
    await t2.close();
  });

  it('a request datagram becomes a request event with its source, local endpoint and received/rport', async () => {
    const { got, ep } = await layer();
    const p = await peer();
    p.send(options('SIP/2.0/UDP client.invalid:5099;rport;branch=z9hG4bKa1'), ep.port);
    await until(() => got.requests.length === 1);
    const { req, src } = got.requests[0]!;
    expect(src).toEqual({ transport: 'udp', address: '127.0.0.1', port: p.port, local: ep });
    const top = req.topVia()!;
    expect(top.received).toBe('127.0.0.1');
    expect(top.rport).toBe(p.port);
    expect(req.header('via')).toContain(`rport=${p.port}`);
  });

  it('no received when sent-by is the source address and no rport is asked for', async () => {
    const { got, ep } = await layer();
    const p = await peer();
    p.send(options(`SIP/2.0/UDP 127.0.0.1:${p.port};branch=z9hG4bKa2`), ep.port);
    await until(() => got.requests.length === 1);
    const top = got.requests[0]!.req.topVia()!;
    expect(top.received).toBeUndefined();
    expect(top.rport).toBeUndefined();
  });

  it('a response goes to received/rport and leaves from the listening socket', async () => {
    const { got, ep } = await layer({}, (req, src, t) => {
      const res = buildResponse(req, 200);
      void t.send(res.toBuffer(), responseTarget(res, src));
    });
    const p = await peer();
    // sent-by names a port nobody listens on: only rport routing reaches the peer
    p.send(options('SIP/2.0/UDP client.invalid:9;rport;branch=z9hG4bKa3'), ep.port);
    await until(() => p.inbox.length === 1);
    expect(got.requests).toHaveLength(1);
    const m = parseMessage(p.inbox[0]!.data);
    expect(m).toBeInstanceOf(SipResponse);
    expect((m as SipResponse).status).toBe(200);
    expect(p.inbox[0]!.port).toBe(ep.port);
    expect(m.topVia()!.rport).toBe(p.port);
  });

  it('a response datagram becomes a response event', async () => {
    const { got, ep } = await layer();
    const p = await peer();
    p.send(
      `SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:${ep.port};branch=z9hG4bKr1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: r1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`,
      ep.port,
    );
    await until(() => got.responses.length === 1);
    expect(got.responses[0]!.res.status).toBe(180);
    expect(got.responses[0]!.src.port).toBe(p.port);
  });

  it('a response whose second Via (the one it is forwarded on) is malformed is a parse error, not a response event (found by the wire fuzzer)', async () => {
    // Kamailio drops such a reply too ("no 2nd via found in reply"); parsed later, that Via threw from
    // inside the proxy's response path ("TU strayResponse handler threw", "no route for response")
    const { t, got, ep } = await layer();
    const p = await peer();
    const res = (second: string, callId: string): string =>
      `SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:${ep.port};branch=z9hG4bKsd1.2;rport\r\nVia: ${second}\r\n` +
      `From: <sip:nobody@127.0.0.1>;tag=m1\r\nTo: <sip:dave@127.0.0.1>;tag=c2\r\nCall-ID: ${callId}\r\nCSeq: 97 INVITE\r\nContent-Length: 0\r\n\r\n`;
    p.send(res('SIP/2.0/UDP user=phone:38727;branch=z9hG4bKx13;rport', 'bad-sent-by'), ep.port);
    p.send(res('SIP/2.0/T"P 127.0.0.2:38727;branch=z9hG4bKx14', 'bad-protocol'), ep.port);
    p.send(res('SIP/2.0/UDP 127.0.0.2:38727;;branch=z9hG4bKx15', 'bad-params'), ep.port);
    // a malformed third Via is not ours to judge: the response is delivered
    p.send(res('SIP/2.0/UDP 127.0.0.2:38727;branch=z9hG4bKx16, SIP/2.0/UDP ;;;', 'third-bad'), ep.port);
    await until(() => got.errors.length + got.responses.length === 4);
    expect(got.errors.map((e) => e.err.code)).toEqual(['BAD_VIA', 'BAD_VIA', 'BAD_VIA']);
    expect(got.responses.map((r) => r.res.callId())).toEqual(['third-bad']);
    expect(t.stats().drops.parse).toBe(3);
  });

  it('a request we send leaves from the listening socket (advertised port = source port)', async () => {
    const { t, ep } = await layer();
    const p = await peer();
    await t.send(Buffer.from(options(`SIP/2.0/UDP ${ep.advertise}:${ep.port};branch=z9hG4bKo1`), 'latin1'), { transport: 'udp', address: '127.0.0.1', port: p.port });
    await until(() => p.inbox.length === 1);
    expect(p.inbox[0]!.port).toBe(ep.port);
    expect(t.stats().messagesOut).toBe(1);
  });

  it('a name in the target is resolved through the injected resolver', async () => {
    const looked: string[] = [];
    const { t } = await layer({
      resolver: async (h) => {
        looked.push(h);
        return [{ address: '127.0.0.1', family: 4 }];
      },
    });
    const p = await peer();
    await t.send(Buffer.from(options('SIP/2.0/UDP x;branch=z9hG4bKo2'), 'latin1'), { transport: 'udp', address: 'peer.test', port: p.port });
    await until(() => p.inbox.length === 1);
    expect(looked).toEqual(['peer.test']);
    expect(await t.resolve('peer.test', p.port, undefined, false)).toEqual([{ transport: 'udp', address: '127.0.0.1', port: p.port }]);
  });

  it('an unparseable datagram raises parseError (with what could be read) and nothing else', async () => {
    const { t, got, ep } = await layer();
    const p = await peer();
    const bad = 'OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKe1\r\nCall-ID: e1\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nbroken header line\r\nContent-Length: 0\r\n\r\n';
    p.send(bad, ep.port);
    p.send('\x00\x01garbage that is not SIP at all', ep.port);
    // a malformed top Via (parsed lazily by src/sip) is a parse error here too
    p.send(options('SIP/2.0/UDP ;;;', 'badvia'), ep.port);
    await until(() => got.errors.length === 3);
    expect(got.requests).toHaveLength(0);
    expect(got.errors[0]!.src.port).toBe(p.port);
    expect(got.errors[0]!.raw.toString('latin1')).toBe(bad);
    expect(got.errors[0]!.err.code).toBe('BAD_HEADER');
    expect(got.errors[0]!.err.partial.callId).toBe('e1');
    expect(got.errors[1]!.err.code).toBe('BAD_START_LINE');
    expect(got.errors[2]!.err.code).toBe('BAD_VIA');
    expect(t.stats().drops.parse).toBe(3);
  });

  it('a datagram over maxMessageSize is a parse error', async () => {
    const { got, ep } = await layer({ limits: { ...LIMITS, maxMessageSize: 600 } });
    const p = await peer();
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKbig', 'big', `X-Pad: ${'x'.repeat(1000)}\r\n`), ep.port);
    await until(() => got.errors.length === 1);
    expect(got.errors[0]!.err.code).toBe('TOO_LARGE');
    expect(got.errors[0]!.raw.length).toBeLessThanOrEqual(600);
  });

  it('requests without Via are dropped; CRLF keep-alives are ignored', async () => {
    const { t, got, ep } = await layer();
    const p = await peer();
    p.send('OPTIONS sip:x SIP/2.0\r\nCall-ID: nv\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nContent-Length: 0\r\n\r\n', ep.port);
    p.send('\r\n\r\n', ep.port);
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKok', 'after'), ep.port);
    await until(() => got.requests.length === 1);
    expect(got.requests[0]!.req.callId()).toBe('after');
    expect(got.errors).toHaveLength(0);
    expect(t.stats().drops['no-via']).toBe(1);
    expect(t.stats().drops.keepalive).toBe(1);
  });

  it('a throwing event handler is contained and counted', async () => {
    const { t, got, ep } = await layer({}, () => {
      throw new Error('boom');
    });
    const p = await peer();
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKt1', 't1'), ep.port);
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKt2', 't2'), ep.port);
    await until(() => got.requests.length === 2);
    expect(t.stats().drops['handler-error']).toBe(2);
  });

  it('the drop hook drops chosen incoming and outgoing datagrams', async () => {
    let dropIn = 1;
    let dropOut = 1;
    const seen: Array<'in' | 'out'> = [];
    const { t, got, ep } = await layer({
      dropHook: (dir, _data, peerAddr) => {
        seen.push(dir);
        expect(peerAddr.transport).toBe('udp');
        if (dir === 'in' && dropIn > 0) return dropIn-- > 0;
        if (dir === 'out' && dropOut > 0) return dropOut-- > 0;
        return false;
      },
    });
    const p = await peer();
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKd1', 'first'), ep.port);
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKd2', 'second'), ep.port);
    await until(() => got.requests.length === 1);
    expect(got.requests[0]!.req.callId()).toBe('second');

    // the dropped send resolves as if sent; the next one arrives first
    await t.send(Buffer.from(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKd3', 'lost'), 'latin1'), { transport: 'udp', address: '127.0.0.1', port: p.port });
    await t.send(Buffer.from(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKd4', 'kept'), 'latin1'), { transport: 'udp', address: '127.0.0.1', port: p.port });
    await until(() => p.inbox.length === 1);
    expect(parseMessage(p.inbox[0]!.data).callId()).toBe('kept');
    expect(t.stats().drops.hook).toBe(2);
    expect(seen.filter((d) => d === 'in')).toHaveLength(2);
    expect(seen.filter((d) => d === 'out')).toHaveLength(2);
  });

  it('the admission hook sees every datagram before parsing (keep-alives and garbage included); refused ones vanish, counted banned', async () => {
    const asked: Array<{ address: string; port: number; transport: string; kind: string }> = [];
    let refuse = false;
    const { t, got, ep } = await layer({
      admit: (p, kind) => {
        asked.push({ ...p, kind });
        return !refuse;
      },
    });
    const p = await peer();
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKad1', 'admitted'), ep.port);
    p.send('\r\n\r\n', ep.port);
    p.send('not SIP at all', ep.port);
    await until(() => got.requests.length === 1 && got.errors.length === 1);
    expect(asked.map((a) => a.kind)).toEqual(['datagram', 'keepalive', 'datagram']);
    expect(asked[0]).toEqual({ transport: 'udp', address: '127.0.0.1', port: p.port, kind: 'datagram' });
    expect(t.stats().drops.keepalive).toBe(1);
    expect(t.stats().drops.banned).toBe(0);

    refuse = true;
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKad2', 'refused'), ep.port);
    p.send('garbage while refused', ep.port);
    p.send('\r\n', ep.port);
    await until(() => asked.length === 6);
    refuse = false;
    // a datagram sent after the refused ones arrives: they were dropped, not delayed
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKad3', 'after'), ep.port);
    await until(() => got.requests.length === 2);
    expect(got.requests.map((r) => r.req.callId())).toEqual(['admitted', 'after']);
    expect(got.errors).toHaveLength(1);
    const s = t.stats();
    expect(s.drops.banned).toBe(3);
    expect(s.drops.parse).toBe(1);
    expect(s.drops.keepalive).toBe(1);
    expect(s.messagesIn).toBe(3);
    expect(p.inbox).toHaveLength(0);
  });

  it('a throwing admission hook refuses the datagram and is counted as a handler error', async () => {
    let n = 0;
    const { t, got, ep } = await layer({
      admit: () => {
        if (n++ === 0) throw new Error('policy bug');
        return true;
      },
    });
    const p = await peer();
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKat1', 'first'), ep.port);
    p.send(options('SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKat2', 'second'), ep.port);
    await until(() => got.requests.length === 1);
    expect(got.requests[0]!.req.callId()).toBe('second');
    expect(t.stats().drops['handler-error']).toBe(1);
    expect(t.stats().drops.banned).toBe(0);
  });

  it('send() without a listener of the family or after close rejects with TransportError', async () => {
    const { t } = await layer();
    await expect(t.send(Buffer.from('x'), { transport: 'udp', address: '::1', port: 5060 })).rejects.toMatchObject({ name: 'TransportError', kind: 'no-listener' });
    await expect(t.send(Buffer.from('x'), { transport: 'tcp', address: '127.0.0.1', port: 5060 })).rejects.toMatchObject({ name: 'TransportError', kind: 'no-listener' });
    await expect(t.send(Buffer.from('x'), { transport: 'udp', address: 'unknown.invalid', port: 5060 })).rejects.toMatchObject({ name: 'TransportError', kind: 'unreachable' });
    await t.close();
    await expect(t.send(Buffer.from('x'), { transport: 'udp', address: '127.0.0.1', port: 5060 })).rejects.toMatchObject({ name: 'TransportError', kind: 'closed' });
    expect(t.stats().sendErrors['no-listener']).toBe(2);
  });
});

describe('UDP socket buffers (udp.recv_buffer_bytes / udp.send_buffer_bytes)', () => {
  type Line = { level: string; obj: Record<string, unknown>; msg: string };
  const listeners: UdpListener[] = [];
  afterEach(async () => {
    await Promise.all(listeners.splice(0).map((l) => l.close()));
  });
  const start = async (buffers?: { recvBytes: number; sendBytes: number }): Promise<{ l: UdpListener; lines: Line[] }> => {
    const lines: Line[] = [];
    const l = new UdpListener('127.0.0.1', 0, undefined, () => undefined, (level, obj, msg) => lines.push({ level, obj, msg }), buffers);
    listeners.push(l);
    await l.start();
    return { l, lines };
  };
  /** the kernel's cap (Linux), to pick a request below and one above it */
  const rmemMax = Number(readFileSync('/proc/sys/net/core/rmem_max', 'latin1').trim());
  const wmemMax = Number(readFileSync('/proc/sys/net/core/wmem_max', 'latin1').trim());

  it('the requested sizes reach the socket; one info line with requested and effective sizes', async () => {
    const want = Math.min(rmemMax, wmemMax, 1024 * 1024);
    const { l, lines } = await start({ recvBytes: want, sendBytes: want });
    const sizes = l.bufferSizes()!;
    // Linux reports twice the granted size (socket(7))
    expect(sizes.recv).toBe(2 * want);
    expect(sizes.send).toBe(2 * want);
    const info = lines.filter((x) => x.msg === 'udp socket buffers');
    expect(info).toHaveLength(1);
    expect(info[0]!.level).toBe('info');
    expect(info[0]!.obj).toMatchObject({ recvRequested: want, recvEffective: sizes.recv, sendRequested: want, sendEffective: sizes.send });
    expect(lines.filter((x) => x.level === 'warn')).toEqual([]);
  });

  it('a size above net.core.rmem_max / wmem_max is capped: a warn line names the sysctl', async () => {
    const { l, lines } = await start({ recvBytes: 2 * rmemMax + 4096, sendBytes: 2 * wmemMax + 4096 });
    const sizes = l.bufferSizes()!;
    expect(sizes.recv).toBe(2 * rmemMax);
    expect(sizes.send).toBe(2 * wmemMax);
    const warns = lines.filter((x) => x.level === 'warn');
    expect(warns.map((w) => w.obj.sysctl).sort()).toEqual(['net.core.rmem_max', 'net.core.wmem_max']);
    const recv = warns.find((w) => w.obj.dir === 'recv')!;
    expect(recv.msg).toMatch(/raise net\.core\.rmem_max/);
    expect(recv.obj).toMatchObject({ requested: 2 * rmemMax + 4096, effective: 2 * rmemMax });
  });

  it('0 (or no sizes) keeps the OS defaults and logs nothing about buffers', async () => {
    const plain = await start();
    const zero = await start({ recvBytes: 0, sendBytes: 0 });
    expect(zero.l.bufferSizes()).toEqual(plain.l.bufferSizes());
    expect([...plain.lines, ...zero.lines].filter((x) => /buffer/.test(x.msg))).toEqual([]);
  });

  it('createTransportLayer passes udpBuffers to every UDP socket', async () => {
    const lines: Line[] = [];
    const t = createTransportLayer({
      listen: [
        { transport: 'udp', host: '127.0.0.1', port: 0 },
        { transport: 'udp', host: '127.0.0.1', port: 0 },
      ],
      limits: LIMITS,
      events: { request: () => undefined, response: () => undefined, parseError: () => undefined },
      log: (level, obj, msg) => lines.push({ level, obj, msg }),
      udpBuffers: { recvBytes: 65536, sendBytes: 32768 },
    });
    await t.start();
    try {
      const info = lines.filter((x) => x.msg === 'udp socket buffers');
      expect(info).toHaveLength(2);
      for (const i of info) expect(i.obj).toMatchObject({ recvRequested: 65536, recvEffective: 131072, sendRequested: 32768, sendEffective: 65536 });
    } finally {
      await t.close();
    }
  });
});
