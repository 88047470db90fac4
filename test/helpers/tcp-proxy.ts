/**
 * A TCP proxy on 127.0.0.1 to put between sipd (or a store) and MariaDB, to break the database
 * connection the ways a network or a server does:
 *
 *   refuse()     cut every connection and close the listening socket: new connections get
 *                ECONNREFUSED (a stopped server)
 *   blackhole()  keep every connection open but forward nothing in either direction, and accept new
 *                connections that never get an answer (a stalled server, a silent firewall)
 *   cut()        destroy every connection now (a restarted server); new ones are forwarded
 *   heal()       forward again (the black-holed connections are destroyed, as a server that timed
 *                them out would; the clients reconnect)
 *
 * Only loopback: it listens on 127.0.0.1 and forwards to `target` (127.0.0.1:3306 by default).
 */
import net from 'node:net';

export type ProxyMode = 'forward' | 'refuse' | 'blackhole';

interface Pair {
  client: net.Socket;
  server: net.Socket | undefined;
  stalled: boolean;
}

export class TcpProxy {
  mode: ProxyMode = 'forward';
  /** connections accepted so far (all modes). */
  accepted = 0;
  private readonly pairs = new Set<Pair>();

  /** client connections open now (all modes): one the client closed or destroyed is no longer counted. */
  get open(): number {
    return this.pairs.size;
  }
  private server: net.Server | undefined;

  private constructor(
    readonly target: { host: string; port: number },
    public port: number,
  ) {}

  static async start(target: { host: string; port: number } = { host: '127.0.0.1', port: 3306 }): Promise<TcpProxy> {
    const p = new TcpProxy(target, 0);
    await p.listen();
    return p;
  }

  private listen(): Promise<void> {
    const srv = net.createServer((c) => this.accept(c));
    this.server = srv;
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(this.port, '127.0.0.1', () => {
        srv.removeListener('error', reject);
        this.port = (srv.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  private accept(client: net.Socket): void {
    this.accepted++;
    client.on('error', () => undefined);
    const pair: Pair = { client, server: undefined, stalled: this.mode === 'blackhole' };
    this.pairs.add(pair);
    client.on('close', () => {
      pair.server?.destroy();
      this.pairs.delete(pair);
    });
    if (pair.stalled) {
      client.on('data', () => undefined); // read and drop
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    pair.server = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.on('data', (d) => {
      if (!pair.stalled) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!pair.stalled) client.write(d);
    });
  }

  /** open connections through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Destroy every open connection. */
  cut(): void {
    for (const p of this.pairs) {
      p.client.destroy();
      p.server?.destroy();
    }
    this.pairs.clear();
  }

  /** Cut everything and stop listening: connecting gets ECONNREFUSED. */
  async refuse(): Promise<void> {
    this.mode = 'refuse';
    const srv = this.server;
    this.server = undefined;
    this.cut();
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }

  /** Forward nothing any more, on open and on new connections (which are accepted and left hanging). */
  async blackhole(): Promise<void> {
    if (this.mode === 'refuse') await this.listen();
    this.mode = 'blackhole';
    for (const p of this.pairs) p.stalled = true;
  }

  /** Forward again; stalled connections are destroyed. */
  async heal(): Promise<void> {
    if (this.mode === 'refuse') await this.listen();
    for (const p of [...this.pairs]) {
      if (p.stalled) {
        p.client.destroy();
        p.server?.destroy();
        this.pairs.delete(p);
      }
    }
    this.mode = 'forward';
  }

  async close(): Promise<void> {
    const srv = this.server;
    this.server = undefined;
    this.cut();
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }
}
