/**
 * The transport registry and the generic transport layer: dispatch by target transport (an unserved
 * one is refused, never sent over another), connection ids unique across transports, connections
 * and stats over every transport, TRANSPORT_INFO facts. Fake transports (no sockets) except where
 * named.
 */
import { describe, expect, it } from 'vitest';
import {
  createTransportLayer,
  isConnectionOriented,
  isReliable,
  isSecure,
  TRANSPORT_FACTORIES,
  TRANSPORT_INFO,
  transportFromToken,
  TransportError,
  type ConnectionInfo,
  type LocalEndpoint,
  type Transport,
  type TransportContext,
  type TransportFactory,
  type TransportLimits,
  type TransportName,
} from '../../src/transport/index.js';

const LIMITS: TransportLimits = {
  maxMessageSize: 65535,
  maxHeaders: 200,
  maxHeaderLine: 8192,
  maxVias: 50,
  tcpMaxConnections: 100,
  tcpMaxPerIp: 100,
  tcpIdleTimeoutMs: 60_000,
  tcpMaxBuffer: 1 << 20,
};

interface FakeSend {
  readonly transport: TransportName;
  readonly address: string;
  readonly port: number;
  readonly connectionId: number | undefined;
}

/** A transport without sockets: `send` records; a connection-oriented one opens a connection per new peer. */
class FakeTransport implements Transport {
  readonly info;
  readonly conns = new Map<number, ConnectionInfo>();
  local: LocalEndpoint | undefined;
  closed = false;
  constructor(
    readonly name: TransportName,
    private readonly ctx: TransportContext,
    private readonly sends: FakeSend[],
  ) {
    this.info = TRANSPORT_INFO[name];
  }
  listen(host: string, port: number, advertise: string | undefined): Promise<LocalEndpoint> {
    this.local = { transport: this.name, address: host, port: port === 0 ? 40000 : port, advertise: advertise ?? host };
    return Promise.resolve(this.local);
  }
  /** an inbound connection from a peer, as a real transport would accept one. */
  accept(address: string, port: number): ConnectionInfo {
    const c: ConnectionInfo = { id: this.ctx.nextConnectionId(), transport: this.name, direction: 'in', remoteAddress: address, remotePort: port, local: this.local! };
    this.conns.set(c.id, c);
    return c;
  }
  send(_data: Buffer, address: string, port: number, connectionId: number | undefined, local: LocalEndpoint | undefined): Promise<void> {
    if (this.info.connectionOriented && (connectionId === undefined || !this.conns.has(connectionId))) {
      if (local === undefined) return Promise.reject(new TransportError('no-listener', 'no local'));
      const c: ConnectionInfo = { id: this.ctx.nextConnectionId(), transport: this.name, direction: 'out', remoteAddress: address, remotePort: port, local };
      this.conns.set(c.id, c);
      connectionId = c.id;
    }
    this.sends.push({ transport: this.name, address, port, connectionId });
    return Promise.resolve();
  }
  connections(): ConnectionInfo[] {
    return [...this.conns.values()];
  }
  connectionCounts(): { total: number; inbound: number; outbound: number } {
    const all = [...this.conns.values()];
    const inbound = all.filter((c) => c.direction === 'in').length;
    return { total: all.length, inbound, outbound: all.length - inbound };
  }
  isOpen(id: number): boolean {
    return this.conns.has(id);
  }
  closeConnection(id: number, reason = 'closed'): boolean {
    const c = this.conns.get(id);
    if (c === undefined) return false;
    this.conns.delete(id);
    this.ctx.closed(c, reason);
    return true;
  }
  close(): Promise<void> {
    this.closed = true;
    this.conns.clear();
    return Promise.resolve();
  }
}

function fakeLayer(names: TransportName[], listen: TransportName[] = names) {
  const sends: FakeSend[] = [];
  const made = new Map<TransportName, FakeTransport>();
  const closedIds: number[] = [];
  const factories: Partial<Record<TransportName, TransportFactory>> = {};
  for (const n of names) {
    factories[n] = (ctx) => {
      expect(ctx.name).toBe(n);
      const t = new FakeTransport(n, ctx, sends);
      made.set(n, t);
      return t;
    };
  }
  const layer = createTransportLayer({
    listen: listen.map((transport, i) => ({ transport, host: '127.0.0.1', port: 5060 + i })),
    limits: LIMITS,
    factories,
    events: { request: () => undefined, response: () => undefined, parseError: () => undefined, connectionClosed: (id) => void closedIds.push(id) },
  });
  return { layer, sends, made, closedIds };
}

const DATA = Buffer.from('OPTIONS sip:x SIP/2.0\r\n\r\n');

describe('TRANSPORT_INFO', () => {
  it('reliability, security and connection orientation of every transport name', () => {
    expect((['udp', 'tcp', 'tls', 'ws', 'wss'] as const).map((t) => [t, isReliable(t), isSecure(t), isConnectionOriented(t)])).toEqual([
      ['udp', false, false, false],
      ['tcp', true, false, true],
      ['tls', true, true, true],
      ['ws', true, false, true],
      ['wss', true, true, true],
    ]);
  });
  it('Via tokens map back to their transport, case-insensitively; unknown ones to undefined', () => {
    for (const info of Object.values(TRANSPORT_INFO)) expect(transportFromToken(info.viaToken)).toBe(info.name);
    expect(transportFromToken('tLs')).toBe('tls');
    expect(transportFromToken('SCTP')).toBeUndefined();
  });
  it('the registry has UDP, TCP, TLS, WS and WSS', () => {
    expect(Object.keys(TRANSPORT_FACTORIES).sort()).toEqual(['tcp', 'tls', 'udp', 'ws', 'wss']);
  });
});

describe('createTransportLayer over the registry', () => {
  it('creates one transport per name in listen, only at start', async () => {
    const { layer, made } = fakeLayer(['udp', 'tcp', 'ws'], ['udp', 'tcp']);
    expect(made.size).toBe(0);
    await layer.start();
    expect([...made.keys()].sort()).toEqual(['tcp', 'udp']);
    expect([...layer.transports()].sort()).toEqual(['tcp', 'udp']);
    expect(layer.endpoints().map((e) => e.transport)).toEqual(['udp', 'tcp']);
    await layer.close();
    expect(made.get('udp')!.closed && made.get('tcp')!.closed).toBe(true);
  });

  it('send goes to the transport of the target', async () => {
    const { layer, sends } = fakeLayer(['udp', 'tcp', 'ws']);
    await layer.start();
    await layer.send(DATA, { transport: 'ws', address: '192.0.2.1', port: 8080 });
    await layer.send(DATA, { transport: 'udp', address: '192.0.2.2', port: 5060 });
    expect(sends.map((s) => [s.transport, s.address, s.port])).toEqual([
      ['ws', '192.0.2.1', 8080],
      ['udp', '192.0.2.2', 5060],
    ]);
    await layer.close();
  });

  it('a target of a transport the layer does not serve is refused (no-listener), not sent over another', async () => {
    const { layer, sends } = fakeLayer(['udp', 'tcp']);
    await layer.start();
    for (const transport of ['tls', 'ws', 'wss'] as const) {
      const err = await layer.send(DATA, { transport, address: '192.0.2.1', port: 5061 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TransportError);
      expect((err as TransportError).kind).toBe('no-listener');
    }
    expect(sends).toEqual([]);
    expect(layer.stats().sendErrors['no-listener']).toBe(3);
    await layer.close();
  });

  it('connection ids are unique across transports', async () => {
    const { layer, made } = fakeLayer(['tcp', 'ws', 'tls']);
    await layer.start();
    const ids: number[] = [];
    for (let i = 0; i < 3; i++) {
      for (const n of ['tcp', 'ws', 'tls'] as const) ids.push(made.get(n)!.accept('192.0.2.9', 1000 + i).id);
    }
    await layer.send(DATA, { transport: 'tcp', address: '192.0.2.8', port: 5060 });
    await layer.send(DATA, { transport: 'tls', address: '192.0.2.8', port: 5061 });
    for (const c of layer.connections()) if (c.direction === 'out') ids.push(c.id);
    expect(ids).toHaveLength(11);
    expect(new Set(ids).size).toBe(11);
    await layer.close();
  });

  it('connections, isConnectionOpen, closeConnection and stats across transports', async () => {
    const { layer, made, closedIds } = fakeLayer(['udp', 'tcp', 'ws']);
    await layer.start();
    const a = made.get('tcp')!.accept('192.0.2.1', 1111);
    const b = made.get('ws')!.accept('192.0.2.2', 2222);
    await layer.send(DATA, { transport: 'ws', address: '192.0.2.3', port: 80 });
    expect(layer.connections().map((c) => [c.transport, c.direction]).sort()).toEqual([
      ['tcp', 'in'],
      ['ws', 'in'],
      ['ws', 'out'],
    ]);
    expect(layer.stats().byTransport).toEqual({
      udp: { total: 0, inbound: 0, outbound: 0 },
      tcp: { total: 1, inbound: 1, outbound: 0 },
      ws: { total: 2, inbound: 1, outbound: 1 },
    });
    expect(layer.stats().connections).toEqual({ total: 3, inbound: 2, outbound: 1 });
    expect(layer.isConnectionOpen(b.id)).toBe(true);
    // a response on the connection a request came in on uses that connection, of its own transport
    await layer.send(DATA, { transport: 'ws', address: '192.0.2.2', port: 2222, connectionId: b.id });
    expect(made.get('ws')!.conns.size).toBe(2);
    expect(layer.closeConnection(b.id)).toBe(true);
    expect(layer.isConnectionOpen(b.id)).toBe(false);
    expect(layer.closeConnection(b.id)).toBe(false);
    expect(closedIds).toEqual([b.id]);
    expect(layer.isConnectionOpen(a.id)).toBe(true);
    await layer.close();
  });

  it('a listen entry of a transport without a factory: start rejects with one line, nothing created', async () => {
    const { layer, made } = fakeLayer(['udp', 'tcp'], ['udp', 'ws']);
    const err = await layer.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toBe('cannot listen on ws:127.0.0.1:5061: no ws transport in this build (there are: udp, tcp)');
    expect(err?.message.includes('\n')).toBe(false);
    expect(made.size).toBe(0);
  });

  it('real UDP and TCP from the registry: a tls target is refused, nothing goes out over TCP', async () => {
    const layer = createTransportLayer({
      listen: [
        { transport: 'udp', host: '127.0.0.1', port: 0 },
        { transport: 'tcp', host: '127.0.0.1', port: 0 },
      ],
      limits: LIMITS,
    });
    await layer.start({ request: () => undefined, response: () => undefined, parseError: () => undefined });
    const tcpPort = layer.endpointFor('tcp', 4)!.port;
    const err = await layer.send(DATA, { transport: 'tls', address: '127.0.0.1', port: tcpPort }).then(
      () => undefined,
      (e: unknown) => e as TransportError,
    );
    expect(err?.kind).toBe('no-listener');
    expect(layer.connections()).toEqual([]);
    expect(layer.stats().connectionsOpened).toBe(0);
    await layer.close();
  });
});
