/** Pure parts of src/transport: Via received/rport, response routing, resolution, transport choice. */
import { describe, expect, it } from 'vitest';
import { parseMessage, parseVia, SipRequest, SipResponse } from '../../src/sip/index.js';
import { normaliseAddress } from '../../src/transport/common.js';
import {
  createTransportLayer,
  Resolver,
  responseTarget,
  TransportError,
  TtlCache,
  viaReceivedParams,
  type LocalEndpoint,
  type Source,
  type TransportName,
} from '../../src/transport/index.js';

const UDP_EP: LocalEndpoint = { transport: 'udp', address: '127.0.0.1', port: 5060, advertise: '127.0.0.1' };
const TCP_EP: LocalEndpoint = { transport: 'tcp', address: '127.0.0.1', port: 5060, advertise: '127.0.0.1' };

function response(via: string): SipResponse {
  const raw = `SIP/2.0 200 OK\r\nVia: ${via}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`;
  const m = parseMessage(Buffer.from(raw, 'latin1'));
  if (!(m instanceof SipResponse)) throw new Error('not a response');
  return m;
}

function request(via: string): SipRequest {
  const raw = `OPTIONS sip:b@x SIP/2.0\r\nVia: ${via}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`;
  const m = parseMessage(Buffer.from(raw, 'latin1'));
  if (!(m instanceof SipRequest)) throw new Error('not a request');
  return m;
}

describe('normaliseAddress', () => {
  it('strips brackets, lower-cases and compresses IPv6', () => {
    expect(normaliseAddress('[2001:DB8:0:0:0:0:0:1]')).toBe('2001:db8::1');
    expect(normaliseAddress('2001:db8::0:1')).toBe('2001:db8::1');
    expect(normaliseAddress('::1')).toBe('::1');
  });
  it('reduces IPv4-mapped IPv6 to IPv4 and keeps IPv4 and names', () => {
    expect(normaliseAddress('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(normaliseAddress('[::FFFF:c000:0207]')).toBe('192.0.2.7');
    expect(normaliseAddress('192.0.2.7')).toBe('192.0.2.7');
    expect(normaliseAddress('Proxy.Example.COM')).toBe('proxy.example.com');
  });
});

describe('viaReceivedParams (RFC 3261 §18.2.1, RFC 3581 §4)', () => {
  it('adds nothing when sent-by is the source address and there is no rport', () => {
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1'), '192.0.2.1', 5060)).toEqual({});
  });
  it('adds received when the sent-by host differs (name or other address)', () => {
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1'), '192.0.2.4', 5070)).toEqual({ received: '192.0.2.4' });
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1'), '192.0.2.4', 5060)).toEqual({ received: '192.0.2.4' });
  });
  it('compares IPv6 normalised and without brackets', () => {
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP [2001:DB8::0:9]:5060;branch=z9hG4bK1'), '2001:db8::9', 5060)).toEqual({});
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP [2001:db8::9];branch=z9hG4bK1'), '2001:db8::10', 5060)).toEqual({ received: '2001:db8::10' });
  });
  it('fills a value-less rport and adds received even when identical to sent-by', () => {
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK1'), '192.0.2.1', 40000)).toEqual({ received: '192.0.2.1', rport: 40000 });
  });
  it('leaves an rport that already has a value', () => {
    expect(viaReceivedParams(parseVia('SIP/2.0/UDP 192.0.2.1:5060;rport=1234;branch=z9hG4bK1'), '192.0.2.1', 40000)).toEqual({});
  });
  it('round trip through setViaReceived writes both parameters into the top Via only', () => {
    const req = request('SIP/2.0/UDP host.example;rport;branch=z9hG4bK1, SIP/2.0/UDP other;branch=z9hG4bK0');
    const p = viaReceivedParams(req.topVia()!, '198.51.100.2', 6000);
    req.setViaReceived(p.received, p.rport);
    const re = parseMessage(req.toBuffer());
    const vias = re.vias();
    expect(vias[0]!.received).toBe('198.51.100.2');
    expect(vias[0]!.rport).toBe(6000);
    expect(vias[1]!.received).toBeUndefined();
  });
});

describe('responseTarget (RFC 3261 §18.2.2, RFC 3581)', () => {
  const udpSrc: Source = { transport: 'udp', address: '198.51.100.2', port: 6000, local: UDP_EP };
  const tcpSrc: Source = { transport: 'tcp', address: '198.51.100.2', port: 40123, connectionId: 7, local: TCP_EP };

  it('UDP: received + rport value', () => {
    expect(responseTarget(response('SIP/2.0/UDP h.example:5070;rport=6000;received=198.51.100.2;branch=z9hG4bK1'), udpSrc)).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 6000,
      local: UDP_EP,
    });
  });
  it('a request received over UDP is answered over UDP even when its Via names TCP or TLS (RFC 4475 intmeth, longreq)', () => {
    expect(responseTarget(response('SIP/2.0/TCP h.example:5070;received=198.51.100.2;branch=z9hG4bK1'), udpSrc)).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 5070,
      local: UDP_EP,
    });
    expect(responseTarget(response('SIP/2.0/TLS h.example;received=198.51.100.2;rport=6000;branch=z9hG4bK1'), udpSrc)).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 6000,
      local: UDP_EP,
    });
  });
  it('WS/WSS (RFC 7118): a browser\'s .invalid Via is answered on the connection the request came in on', () => {
    const WS_EP = { transport: 'ws' as const, address: '127.0.0.1', port: 8080, advertise: '127.0.0.1' };
    const wsSrc: Source = { transport: 'ws', address: '198.51.100.2', port: 50123, connectionId: 1000000007, local: WS_EP };
    expect(responseTarget(response('SIP/2.0/WS df7jal23ls0d.invalid;received=198.51.100.2;branch=z9hG4bK1'), wsSrc)).toEqual({
      transport: 'ws',
      address: '198.51.100.2',
      port: 80,
      connectionId: 1000000007,
      local: WS_EP,
    });
    const wssSrc: Source = { ...wsSrc, transport: 'wss', local: { ...WS_EP, transport: 'wss' } };
    expect(responseTarget(response('SIP/2.0/WSS df7jal23ls0d.invalid;received=198.51.100.2;branch=z9hG4bK1'), wssSrc)).toMatchObject({ transport: 'wss', connectionId: 1000000007 });
    // a WS Via arriving over a TCP connection is answered on that connection (whichever
    // connection-oriented transport it is, as for a TLS Via over TCP)
    expect(responseTarget(response('SIP/2.0/WS x.invalid;received=198.51.100.2;branch=z9hG4bK1'), tcpSrc)).toMatchObject({ transport: 'tcp', connectionId: tcpSrc.connectionId });
  });
  it('UDP: received without rport uses the sent-by port, default 5060', () => {
    expect(responseTarget(response('SIP/2.0/UDP h.example:5070;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({ transport: 'udp', address: '198.51.100.2', port: 5070 });
    expect(responseTarget(response('SIP/2.0/UDP h.example;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({ transport: 'udp', address: '198.51.100.2', port: 5060 });
  });
  it('UDP: maddr in the top Via is ignored, unicast or multicast: received/rport win (no reflection to a third party)', () => {
    // unicast maddr naming a victim, with the real source in received/rport
    expect(responseTarget(response('SIP/2.0/UDP h.example:5080;maddr=203.0.113.9;received=198.51.100.2;rport=40000;branch=z9hG4bK1'), udpSrc)).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 40000,
      local: UDP_EP,
    });
    expect(responseTarget(response('SIP/2.0/UDP h.example:5080;maddr=203.0.113.9;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 5080,
    });
    // multicast maddr with ttl: ignored as well (sipd does not send multicast responses)
    expect(responseTarget(response('SIP/2.0/UDP h.example:5080;maddr=239.1.1.1;ttl=1;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 5080,
    });
    // no received (sent-by was the source address): the sent-by, not the maddr
    expect(responseTarget(response('SIP/2.0/UDP 198.51.100.7:5090;maddr=203.0.113.9;branch=z9hG4bK1'))).toEqual({
      transport: 'udp',
      address: '198.51.100.7',
      port: 5090,
    });
    // over TCP too: the request's connection / received, never the maddr
    expect(responseTarget(response('SIP/2.0/TCP h.example:5070;maddr=203.0.113.9;received=198.51.100.2;branch=z9hG4bK1'), tcpSrc)).toMatchObject({
      transport: 'tcp',
      address: '198.51.100.2',
      connectionId: 7,
    });
  });
  it('UDP: sent-by only (IPv6 without brackets, name kept for send() to resolve)', () => {
    expect(responseTarget(response('SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK1'))).toEqual({ transport: 'udp', address: '2001:db8::1', port: 5062 });
    expect(responseTarget(response('SIP/2.0/UDP h.example;branch=z9hG4bK1'))).toEqual({ transport: 'udp', address: 'h.example', port: 5060 });
  });
  it('UDP: received in RFC 5118 bracket form', () => {
    expect(responseTarget(response('SIP/2.0/UDP h.example;received=[2001:db8::9];rport=7000;branch=z9hG4bK1'))).toMatchObject({ address: '2001:db8::9', port: 7000 });
  });
  it('TCP: the request connection, with received and the sent-by port as the fallback', () => {
    expect(responseTarget(response('SIP/2.0/TCP h.example:5070;rport=40123;received=198.51.100.2;branch=z9hG4bK1'), tcpSrc)).toEqual({
      transport: 'tcp',
      address: '198.51.100.2',
      port: 5070,
      connectionId: 7,
      local: TCP_EP,
    });
  });
  it('TLS: default port 5061; no source: no connection id; over TLS, never cleartext TCP', () => {
    expect(responseTarget(response('SIP/2.0/TLS h.example;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({ transport: 'tls', address: '198.51.100.2', port: 5061 });
  });
  it('WS / WSS Via tokens map to ws / wss (RFC 7118 §5), default ports 80 / 443', () => {
    expect(responseTarget(response('SIP/2.0/WS abc.invalid;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({ transport: 'ws', address: '198.51.100.2', port: 80 });
    expect(responseTarget(response('SIP/2.0/WSS abc.invalid;received=198.51.100.2;branch=z9hG4bK1'))).toEqual({ transport: 'wss', address: '198.51.100.2', port: 443 });
  });
  it('a request over a connection-oriented transport is answered on its connection, whatever connection-oriented Via token it names', () => {
    const WS_EP = { transport: 'ws' as const, address: '127.0.0.1', port: 8080, advertise: '127.0.0.1' };
    const wsSrc: Source = { transport: 'ws', address: '198.51.100.2', port: 50000, connectionId: 9, local: WS_EP };
    expect(responseTarget(response('SIP/2.0/WSS abc.invalid;received=198.51.100.2;branch=z9hG4bK1'), wsSrc)).toEqual({
      transport: 'ws',
      address: '198.51.100.2',
      port: 443,
      connectionId: 9,
      local: WS_EP,
    });
    const TLS_EP = { transport: 'tls' as const, address: '127.0.0.1', port: 5061, advertise: '127.0.0.1' };
    const tlsSrc: Source = { transport: 'tls', address: '198.51.100.2', port: 40000, connectionId: 9, local: TLS_EP };
    expect(responseTarget(response('SIP/2.0/TLS h.example;received=198.51.100.2;branch=z9hG4bK1'), tlsSrc)).toEqual({ transport: 'tls', address: '198.51.100.2', port: 5061, connectionId: 9, local: TLS_EP });
    expect(responseTarget(response('SIP/2.0/TLS h.example;received=198.51.100.2;branch=z9hG4bK1'), tcpSrc)).toEqual({
      transport: 'tcp',
      address: '198.51.100.2',
      port: 5061,
      connectionId: 7,
      local: TCP_EP,
    });
  });
  it('a request with a transport sipd does not know in its Via is answered over the transport it came in on (found by the wire fuzzer)', () => {
    // it got no answer at all, and a warning with a stack trace per request
    expect(responseTarget(response('SIP/2.0/SCTP h.example:5070;received=198.51.100.2;branch=z9hG4bK1'), udpSrc)).toEqual({
      transport: 'udp',
      address: '198.51.100.2',
      port: 5070,
      local: UDP_EP,
    });
    expect(responseTarget(response('SIP/2.0/U%00DP 127.0.0.1:36926;branch=z9hG4bK2;rport=36926;received=127.0.0.1'), udpSrc)).toMatchObject({ transport: 'udp', address: '127.0.0.1', port: 36926 });
    expect(responseTarget(response('SIP/2.0/TBP h.example:5070;received=198.51.100.2;branch=z9hG4bK3'), tcpSrc)).toEqual({
      transport: 'tcp',
      address: '198.51.100.2',
      port: 5070,
      connectionId: 7,
      local: TCP_EP,
    });
  });
  it('unsupported transport (without the source of the request) and missing Via are TransportErrors', () => {
    expect(() => responseTarget(response('SIP/2.0/SCTP h.example;branch=z9hG4bK1'))).toThrow(TransportError);
    const noVia = parseMessage(Buffer.from('SIP/2.0 200 OK\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n', 'latin1'));
    expect(() => responseTarget(noVia as SipResponse)).toThrow(TransportError);
  });
});

describe('TtlCache', () => {
  it('expires entries and stays bounded (oldest evicted)', () => {
    let now = 0;
    const c = new TtlCache<number>(3, () => now);
    c.set('a', 1, 100);
    c.set('b', 2, 100);
    c.set('c', 3, 100);
    c.set('d', 4, 100);
    expect(c.size).toBe(3);
    expect(c.get('a')).toBeUndefined();
    expect(c.get('d')).toBe(4);
    now = 100;
    expect(c.get('d')).toBeUndefined();
  });
});

describe('Resolver', () => {
  const all = (): boolean => true;
  const only =
    (t: TransportName, f: 4 | 6) =>
    (tt: TransportName, ff: 4 | 6): boolean =>
      tt === t && ff === f;

  it('numeric hosts are used directly, default port 5060 and UDP', async () => {
    const r = new Resolver({ lookup: () => Promise.reject(new Error('must not be called')) });
    expect(await r.resolve('192.0.2.1', undefined, undefined, false, all)).toEqual([{ transport: 'udp', address: '192.0.2.1', port: 5060 }]);
    expect(await r.resolve('[2001:db8::1]', 5070, 'tcp', false, all)).toEqual([{ transport: 'tcp', address: '2001:db8::1', port: 5070 }]);
  });

  it('resolveNow answers what resolve answers for IP literals (listeners, TCP fallback, sips:), and undefined for a name', async () => {
    const r = new Resolver({ lookup: async () => [{ address: '192.0.2.10', family: 4 }] });
    const cases: Array<[string, number | undefined, TransportName | undefined, boolean, (t: TransportName, f: 4 | 6) => boolean]> = [
      ['192.0.2.1', undefined, undefined, false, all],
      ['[2001:db8::1]', 5070, 'tcp', false, all],
      ['2001:db8::1', undefined, undefined, false, only('udp', 4)],
      ['192.0.2.1', undefined, undefined, false, only('tcp', 4)],
      ['192.0.2.1', undefined, 'udp', false, only('tcp', 4)],
      ['192.0.2.1', undefined, undefined, true, all],
      ['192.0.2.1', undefined, 'udp', true, all],
      ['192.0.2.1', 5071, 'tcp', true, only('tls', 4)],
      ['[]', undefined, undefined, false, all],
    ];
    for (const [h, p, t, sips, has] of cases) {
      const now = r.resolveNow(h, p, t, sips, has);
      expect(now).toBeDefined();
      expect(now).toEqual(await r.resolve(h, p, t, sips, has));
    }
    expect(r.resolveNow('192.0.2.1', undefined, undefined, true, all)).toEqual([{ transport: 'tls', address: '192.0.2.1', port: 5061 }]);
    expect(r.resolveNow('h.example', undefined, undefined, false, all)).toBeUndefined();
    expect(await r.resolve('h.example', undefined, undefined, false, all)).toEqual([{ transport: 'udp', address: '192.0.2.10', port: 5060 }]);
  });

  it('names go through lookup, are cached for the TTL, and coalesce concurrent lookups', async () => {
    let now = 0;
    let calls = 0;
    const r = new Resolver({
      now: () => now,
      ttlMs: 1000,
      lookup: async (h) => {
        calls++;
        expect(h).toBe('proxy.example');
        return [
          { address: '192.0.2.10', family: 4 },
          { address: '2001:db8::10', family: 6 },
        ];
      },
    });
    const [a, b] = await Promise.all([r.resolve('Proxy.Example', undefined, undefined, false, all), r.resolve('proxy.example', 5080, 'tcp', false, all)]);
    expect(a).toEqual([
      { transport: 'udp', address: '192.0.2.10', port: 5060 },
      { transport: 'udp', address: '2001:db8::10', port: 5060 },
    ]);
    expect(b.map((t) => `${t.transport}:${t.address}:${t.port}`)).toEqual(['tcp:192.0.2.10:5080', 'tcp:2001:db8::10:5080']);
    expect(calls).toBe(1);
    await r.resolve('proxy.example', undefined, undefined, false, all);
    expect(calls).toBe(1);
    now = 1000;
    await r.resolve('proxy.example', undefined, undefined, false, all);
    expect(calls).toBe(2);
  });

  it('leaves out families and transports without a listener; falls back to TCP when there is no UDP listener', async () => {
    const r = new Resolver({
      lookup: async () => [
        { address: '192.0.2.10', family: 4 },
        { address: '2001:db8::10', family: 6 },
      ],
    });
    expect(await r.resolve('h.example', undefined, undefined, false, only('udp', 6))).toEqual([{ transport: 'udp', address: '2001:db8::10', port: 5060 }]);
    expect(await r.resolve('h.example', undefined, undefined, false, only('tcp', 4))).toEqual([{ transport: 'tcp', address: '192.0.2.10', port: 5060 }]);
    expect(await r.resolve('h.example', undefined, 'udp', false, only('tcp', 4))).toEqual([]);
  });

  it('a failing lookup resolves to [] and is negative-cached', async () => {
    let calls = 0;
    const r = new Resolver({
      lookup: async () => {
        calls++;
        throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
      },
    });
    expect(await r.resolve('nowhere.invalid', undefined, undefined, false, all)).toEqual([]);
    expect(await r.resolve('nowhere.invalid', undefined, undefined, false, all)).toEqual([]);
    expect(calls).toBe(1);
  });

  it('the cache is bounded', async () => {
    const r = new Resolver({ maxEntries: 10, lookup: async () => [{ address: '192.0.2.1', family: 4 }] });
    for (let i = 0; i < 100; i++) await r.resolve(`h${i}.example`, undefined, undefined, false, all);
    expect(r.cacheSize).toBeLessThanOrEqual(20);
  });

  it('sips resolves to nothing without a TLS listener', async () => {
    const r = new Resolver();
    const udpTcp = (t: TransportName): boolean => t === 'udp' || t === 'tcp';
    expect(await r.resolve('192.0.2.1', undefined, undefined, true, udpTcp)).toEqual([]);
    expect(await r.resolve('192.0.2.1', undefined, 'tcp', true, udpTcp)).toEqual([]);
  });

  it('sips resolves to TLS only (transport=tcp means TLS there; udp and ws never), default port 5061', async () => {
    const r = new Resolver();
    expect(await r.resolve('192.0.2.1', undefined, undefined, true, all)).toEqual([{ transport: 'tls', address: '192.0.2.1', port: 5061 }]);
    expect(await r.resolve('192.0.2.1', 5071, 'tcp', true, all)).toEqual([{ transport: 'tls', address: '192.0.2.1', port: 5071 }]);
    expect(await r.resolve('192.0.2.1', 5071, undefined, true, all)).toEqual([{ transport: 'tls', address: '192.0.2.1', port: 5071 }]);
    expect(await r.resolve('192.0.2.1', undefined, 'udp', true, all)).toEqual([]);
    expect(await r.resolve('192.0.2.1', undefined, 'ws', true, all)).toEqual([]);
    expect(await r.resolve('192.0.2.1', undefined, 'wss', true, all)).toEqual([{ transport: 'wss', address: '192.0.2.1', port: 443 }]);
  });

  it('sip: with transport=tls defaults to port 5061', async () => {
    const r = new Resolver();
    expect(await r.resolve('192.0.2.1', undefined, 'tls', false, all)).toEqual([{ transport: 'tls', address: '192.0.2.1', port: 5061 }]);
  });

  it('SRV (RFC 3263): used for a name without port, ordered by priority then weight, UDP before TCP', async () => {
    const srv: Record<string, Array<{ name: string; port: number; priority: number; weight: number }>> = {
      '_sip._udp.example.com': [
        { name: 'b.example.com', port: 5062, priority: 20, weight: 0 },
        { name: 'a.example.com', port: 5061, priority: 10, weight: 5 },
      ],
      '_sip._tcp.example.com': [{ name: 'a.example.com', port: 5070, priority: 10, weight: 0 }],
    };
    const hosts: Record<string, string> = { 'a.example.com': '192.0.2.1', 'b.example.com': '192.0.2.2', 'example.com': '192.0.2.99' };
    const r = new Resolver({
      lookup: async (h) => (hosts[h] !== undefined ? [{ address: hosts[h]!, family: 4 }] : []),
      srv: async (n) => {
        const recs = srv[n];
        if (recs === undefined) throw Object.assign(new Error('ENODATA'), { code: 'ENODATA' });
        return recs;
      },
    });
    const ts = await r.resolve('example.com', undefined, undefined, false, all);
    expect(ts.map((t) => `${t.transport}:${t.address}:${t.port}`)).toEqual(['udp:192.0.2.1:5061', 'udp:192.0.2.2:5062', 'tcp:192.0.2.1:5070']);
    // explicit port: no SRV
    expect(await r.resolve('example.com', 5060, undefined, false, all)).toEqual([{ transport: 'udp', address: '192.0.2.99', port: 5060 }]);
    // no SRV records: A on 5060
    expect(await r.resolve('a.example.com', undefined, undefined, false, all)).toEqual([{ transport: 'udp', address: '192.0.2.1', port: 5060 }]);
  });
});

describe('chooseTransport (RFC 3261 §18.1.1)', () => {
  const layer = createTransportLayer({
    listen: [],
    limits: {
      maxMessageSize: 65536,
      maxHeaders: 256,
      maxHeaderLine: 8192,
      maxVias: 70,
      tcpMaxConnections: 10,
      tcpMaxPerIp: 10,
      tcpIdleTimeoutMs: 1000,
      tcpMaxBuffer: 65536,
    },
    events: { request: () => undefined, response: () => undefined, parseError: () => undefined },
  });
  it('keeps UDP without a TCP listener', () => {
    expect(layer.chooseTransport(5000, { transport: 'udp', address: '192.0.2.1', port: 5060 })).toEqual({ transport: 'udp', address: '192.0.2.1', port: 5060 });
  });
  it('send() before start() rejects with TransportError, never throws', async () => {
    await expect(layer.send(Buffer.from('x'), { transport: 'udp', address: '192.0.2.1', port: 5060 })).rejects.toBeInstanceOf(TransportError);
  });
});
