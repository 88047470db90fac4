/**
 * TLS material for the TLS transport (and WSS): the secure contexts used for new handshakes, and
 * their reload. No file reading here: the PEM texts come from config loading (src/config.ts
 * `loadTlsMaterial`), which alone touches the file system; the composition root calls `reload`
 * with freshly read material (SIGHUP, file change).
 *
 * - server context: our certificate chain and key; `ca` (default: Node's bundled Mozilla roots)
 *   verifies client certificates when `verifyClient` is on.
 * - client context (outbound): `ca` verifies the server; our certificate is offered as the client
 *   certificate (a trunk doing mutual TLS asks for it).
 * - minimum version (default TLSv1.2) and an optional OpenSSL cipher list apply to both.
 * A reload swaps both contexts for NEW handshakes only; established connections keep theirs. A bad
 * new certificate (unparseable, key not matching) leaves the old contexts in place.
 */
import tls from 'node:tls';

export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3';

/** PEM texts, as read by config loading. */
export interface TlsMaterial {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** CA bundle (PEM); undefined: the system/Node default roots. */
  readonly ca?: string | Buffer;
}

export interface TlsSettings {
  /** request a client certificate and refuse the handshake when it does not verify against `ca`. */
  readonly verifyClient: boolean;
  /** outbound: verify the server certificate (chain against `ca`, name against SNI / address). */
  readonly verifyServer: boolean;
  readonly minVersion: TlsMinVersion;
  /** OpenSSL cipher list (TLS 1.2 and below); undefined: Node's default. */
  readonly ciphers?: string;
  /** an inbound handshake not finished within this long is dropped (counted 'tls-handshake'). */
  readonly handshakeTimeoutMs: number;
}

/** A bad certificate, key or CA bundle (one line). */
export class TlsMaterialError extends Error {
  override readonly name = 'TlsMaterialError';
}

interface Contexts {
  readonly server: tls.SecureContext;
  readonly client: tls.SecureContext;
}

function build(m: TlsMaterial, s: TlsSettings): Contexts {
  const common = { minVersion: s.minVersion, ...(s.ciphers !== undefined ? { ciphers: s.ciphers } : {}), ...(m.ca !== undefined ? { ca: m.ca } : {}) };
  try {
    // one context serves both sides: the same chain, key, CA bundle and protocol settings
    const c = tls.createSecureContext({ ...common, cert: m.cert, key: m.key });
    return { server: c, client: c };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new TlsMaterialError(`${err.message}${err.code !== undefined && !err.message.includes(err.code) ? ` (${err.code})` : ''}`.split('\n')[0]!);
  }
}

/** The current secure contexts; `reload` swaps them. */
export class TlsContexts {
  private ctx: Contexts;
  /** incremented by each successful reload (diagnostics, tests). */
  generation = 0;

  /** Throws TlsMaterialError when the material is unusable. */
  constructor(
    material: TlsMaterial,
    readonly settings: TlsSettings,
  ) {
    this.ctx = build(material, settings);
  }

  /** the context for the next inbound handshake. */
  server(): tls.SecureContext {
    return this.ctx.server;
  }

  /** the context for the next outbound handshake. */
  client(): tls.SecureContext {
    return this.ctx.client;
  }

  /** Swap in new material for new handshakes; on a bad one keep the old contexts and say why. */
  reload(material: TlsMaterial): { ok: true } | { ok: false; error: string } {
    try {
      this.ctx = build(material, this.settings);
    } catch (e) {
      return { ok: false, error: e instanceof Error ? e.message : String(e) };
    }
    this.generation++;
    return { ok: true };
  }
}
