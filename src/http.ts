/**
 * sipd's HTTP endpoint: `GET /metrics` (Prometheus), `GET /healthz` (`/health`), both open, and the
 * admin verbs, today `DELETE /location/USER@DOMAIN` (drop an AOR's registrations in the running
 * server; `sipctl ul rm` calls it, as kamctl uses RPC).
 *
 * Every admin request passes three checks, in this order, each refusal without side effect and
 * logged once at warn (never with the token):
 * 1. admin verbs are on: there is a token, and the endpoint listens on a loopback address or the
 *    token was set explicitly (a generated token on 0.0.0.0 would put the verbs on every network
 *    the host is on, guarded by a file nobody chose to distribute) — else 403;
 * 2. the Host header names this endpoint: its listen HOST:PORT, localhost:PORT, 127.0.0.1:PORT,
 *    [::1]:PORT or one of `allowedHosts` — else 403 (a web page a browser loads from a rebound DNS
 *    name reaches 127.0.0.1 with its own name in Host);
 * 3. `Authorization: Bearer TOKEN` matches (constant-time) — else 401.
 *
 * No I/O of its own: the composition root passes what the endpoint serves.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';

export interface AdminTokenInfo {
  readonly value: string;
  /** set in the configuration or environment (not generated into the state directory). */
  readonly explicit: boolean;
}

/** Whether admin verbs are served, and with which token. */
export type AdminPolicy =
  | { readonly on: true; readonly token: string; readonly allowedHosts: readonly string[] }
  | { readonly on: false; readonly reason: string };

/** Loopback: 127.0.0.0/8, ::1 (also IPv4-mapped), and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  const v = isIP(h);
  if (v === 4) return h.startsWith('127.');
  if (v === 6) {
    if (h.startsWith('::ffff:') && isIP(h.slice(7)) === 4) return h.slice(7).startsWith('127.');
    // ::1 in any spelling (0:0:0:0:0:0:0:1, ::0001): WHATWG URL prints the RFC 5952 form
    try {
      return new URL(`http://[${h}]/`).hostname === '[::1]';
    } catch {
      return false;
    }
  }
  return false;
}

/** Decide the admin policy from the endpoint's configured host and the token (if any). */
export function adminPolicy(listenHost: string, token: AdminTokenInfo | null, allowedHosts: readonly string[] = []): AdminPolicy {
  if (token === null) return { on: false, reason: 'no admin token' };
  if (!token.explicit && !isLoopbackHost(listenHost)) {
    return {
      on: false,
      reason: `the metrics endpoint listens on ${formatHostForHeader(listenHost)}, not a loopback address, and no admin.token / SIPD_ADMIN_TOKEN is set`,
    };
  }
  return { on: true, token: token.value, allowedHosts };
}

function formatHostForHeader(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** `host:port` in lower case; a Host without port is port 80 (RFC 9110 §7.2, http). */
function normaliseHostHeader(h: string): string | undefined {
  const s = h.trim().toLowerCase();
  if (s === '' || /[\s/@?#]/.test(s)) return undefined;
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return undefined;
  return `${m[1]}:${m[2] === undefined ? '80' : String(Number(m[2]))}`;
}

/** The Host header values accepted for admin verbs on an endpoint bound to listenHost:port. */
export function acceptedHosts(listenHost: string, port: number, extra: readonly string[] = []): Set<string> {
  const out = new Set<string>();
  for (const h of [`${formatHostForHeader(listenHost)}:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, ...extra]) {
    const n = normaliseHostHeader(h);
    if (n !== undefined) out.add(n);
  }
  return out;
}

export function hostAllowed(host: string | undefined, accepted: ReadonlySet<string>): boolean {
  if (host === undefined) return false;
  const n = normaliseHostHeader(host);
  return n !== undefined && accepted.has(n);
}

/** Constant-time comparison of a presented token with the expected one (lengths hidden by hashing). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer TOKEN` header (RFC 6750 §2.1), or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  const m = /^Bearer +([\x21-\x7e]+) *$/i.exec(authorization);
  return m?.[1];
}

export type AdminDecision = { ok: true } | { ok: false; status: 401 | 403; reason: 'admin-off' | 'host' | 'no-token' | 'bad-token'; message: string };

/** The three admin checks for one request (see the module comment). */
export function checkAdmin(policy: AdminPolicy, accepted: ReadonlySet<string>, headers: { host?: string; authorization?: string }): AdminDecision {
  if (!policy.on) return { ok: false, status: 403, reason: 'admin-off', message: `admin verbs are off: ${policy.reason}` };
  if (!hostAllowed(headers.host, accepted)) return { ok: false, status: 403, reason: 'host', message: 'Host header does not name this endpoint' };
  const presented = bearerToken(headers.authorization);
  if (presented === undefined) return { ok: false, status: 401, reason: 'no-token', message: 'admin token required (Authorization: Bearer TOKEN)' };
  if (!tokenMatches(presented, policy.token)) return { ok: false, status: 401, reason: 'bad-token', message: 'wrong admin token' };
  return { ok: true };
}

/** Longest AOR accepted (the location table's username + domain columns are 64 + 64). */
const MAX_AOR = 512;

/**
 * The AOR of `DELETE /location/AOR` (percent-decoded once; `sip:`/`sips:` prefix allowed) as the
 * location table keys it: `user@domain`, the user part unchanged (case-sensitive, RFC 3261 §19.1.4),
 * the domain lower-cased. An error string when it is empty or malformed.
 */
export function parseLocationAor(encoded: string): { aor: string } | { error: string } {
  if (encoded.length === 0) return { error: 'empty AOR (expected /location/USER@DOMAIN)' };
  if (encoded.length > MAX_AOR * 3) return { error: 'AOR too long' };
  let s: string;
  try {
    s = decodeURIComponent(encoded);
  } catch {
    return { error: 'malformed percent-encoding' };
  }
  s = s.replace(/^sips?:/i, '');
  if (s.length > MAX_AOR) return { error: 'AOR too long' };
  if (/[\x00-\x20\x7f]/.test(s)) return { error: 'control character or space in AOR' };
  const at = s.lastIndexOf('@');
  if (at <= 0 || at === s.length - 1) return { error: 'expected USER@DOMAIN' };
  return { aor: `${s.slice(0, at)}@${s.slice(at + 1).toLowerCase()}` };
}

export interface HttpEndpointDeps {
  /** the Prometheus exposition. */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** health: 200 when ok, 503 otherwise, with a JSON body. */
  health(): Promise<{ ok: boolean; body: Record<string, unknown> }>;
  /** drop every binding of an AOR; resolves to the number removed. */
  removeLocation(aor: string): Promise<number>;
  admin: AdminPolicy;
  /** the endpoint's configured listen host and the port it is bound to (for the Host check). */
  listen(): { host: string; port: number };
  log: {
    info(obj: Record<string, unknown>, msg: string): void;
    warn(obj: Record<string, unknown>, msg: string): void;
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** The request handler of the endpoint (pass to http.createServer). Never throws; errors are a 500. */
export function createHttpHandler(d: HttpEndpointDeps): (req: IncomingMessage, res: ServerResponse) => void {
  let accepted: { port: number; set: Set<string> } | undefined;
  const acceptedNow = (): Set<string> => {
    const l = d.listen();
    if (accepted === undefined || accepted.port !== l.port) {
      accepted = { port: l.port, set: acceptedHosts(l.host, l.port, d.admin.on ? d.admin.allowedHosts : []) };
    }
    return accepted.set;
  };

  const admin = async (req: IncomingMessage, res: ServerResponse, verb: string, rest: string): Promise<void> => {
    const decision = checkAdmin(d.admin, acceptedNow(), { host: req.headers.host, authorization: req.headers.authorization });
    if (!decision.ok) {
      d.log.warn(
        { verb, reason: decision.reason, remote: req.socket.remoteAddress, host: req.headers.host?.slice(0, 100) },
        'admin request refused',
      );
      json(res, decision.status, { error: decision.message }, decision.status === 401 ? { 'www-authenticate': 'Bearer' } : {});
      return;
    }
    const parsed = parseLocationAor(rest);
    if ('error' in parsed) {
      json(res, 400, { error: parsed.error });
      return;
    }
    let removed: number;
    try {
      removed = await d.removeLocation(parsed.aor);
    } catch (e) {
      // the store refuses an AOR it cannot hold (400) or is unavailable (503); anything else is a 500
      const code = typeof e === 'object' && e !== null && 'code' in e ? String((e as { code: unknown }).code) : '';
      if (code === 'INVALID') json(res, 400, { error: e instanceof Error ? e.message : 'invalid AOR' });
      else if (code === 'UNREACHABLE' || code === 'BUSY') json(res, 503, { error: 'location store unavailable' }, { 'retry-after': '5' });
      else throw e;
      return;
    }
    d.log.info({ aor: parsed.aor, removed }, 'registrations removed by admin');
    json(res, 200, { aor: parsed.aor, removed });
  };

  return (req, res) => {
    void (async () => {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      if (path === '/metrics') {
        const m = await d.metrics();
        res.writeHead(200, { 'content-type': m.contentType });
        res.end(m.body);
      } else if (path === '/healthz' || path === '/health') {
        const h = await d.health();
        json(res, h.ok ? 200 : 503, h.body);
      } else if (req.method === 'DELETE' && path.startsWith('/location/')) {
        await admin(req, res, 'DELETE /location', path.slice('/location/'.length));
      } else {
        res.writeHead(404);
        res.end();
      }
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  };
}
