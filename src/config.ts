/**
 * Configuration: the only module that reads configuration files and the
 * environment.
 *
 * Precedence (later wins): config/default.yaml (next to the package, not the
 * working directory) < `--config FILE` < environment variables
 * (SIPD_LISTEN, SIPD_DB, SIPD_DOMAINS, SIPD_METRICS, SIPD_LOG_LEVEL,
 * SIPD_STATE_DIR, SIPD_ADMIN_TOKEN, SIPD_UDP_RECV_BUFFER_BYTES,
 * SIPD_UDP_SEND_BUFFER_BYTES, SIPD_TLS_CERT, SIPD_TLS_KEY).
 *
 * Secrets not given in the configuration (auth.secret, admin.token) live in
 * files under `state_dir`, created on first start: `resolveSecrets` (sipd)
 * loads or creates them, `adminTokenForClient` (sipctl) only reads. Both
 * are here because this is the only module that touches the file system
 * for settings; the server gets the resolved values passed in.
 *
 * The resulting object keeps the YAML key names (snake_case), so one setting
 * has one name in the file, in error messages and in code. A few string
 * values are parsed into structures: `listen` (ListenAddr[]), `db` (DbUrl),
 * `metrics` (HostPort | null).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, unwatchFile, watchFile, writeSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { TRANSPORT_INFO } from './transport/transport.js';
import type { TransportName } from './transport/types.js';

/** Thrown for any configuration problem; `message` is one line naming the key. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** Dotted key path (e.g. `registrar.min_expires`), or '' for file-level errors. */
  readonly path: string;
  constructor(path: string, reason: string) {
    super(path ? `config: ${path}: ${reason}` : `config: ${reason}`);
    this.path = path;
  }
}

/** A listen entry's transport; whether this build has it is checked at start (src/transport/registry.ts). */
export type Transport = TransportName;

export interface ListenAddr {
  transport: Transport;
  /** IP or host name; IPv6 without brackets (e.g. `::1`). */
  host: string;
  port: number;
}

export interface HostPort {
  host: string;
  port: number;
}

export type DbUrl =
  | { kind: 'sqlite'; path: string }
  | { kind: 'mysql'; host: string; port: number; user: string; password: string; database: string };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const DB_MODES = ['memory', 'write-back', 'write-through', 'db-only'] as const;
export type DbMode = (typeof DB_MODES)[number];
export const DIGEST_ALGORITHMS = ['MD5', 'SHA-256'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];

function parsePort(s: string, what: string): number {
  if (!/^\d{1,5}$/.test(s)) throw new Error(`invalid port "${s}" in ${what}`);
  const port = Number(s);
  if (port < 1 || port > 65535) throw new Error(`port ${port} out of range 1-65535 in ${what}`);
  return port;
}

/** Split `HOST:PORT` / `[V6]:PORT`. Throws Error with a short reason. */
export function parseHostPort(s: string): HostPort {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:[\]\s]+):(\d+)$/.exec(s);
  if (!m) throw new Error(`expected HOST:PORT (IPv6 as [ADDR]:PORT), got "${s}"`);
  const host = m[1]!;
  if (s.startsWith('[') && isIP(host) !== 6) throw new Error(`invalid IPv6 address "${host}" in "${s}"`);
  return { host, port: parsePort(m[2]!, `"${s}"`) };
}

/**
 * Parse `udp:127.0.0.1:5060`, `tcp:[::1]:5060`, `tls:HOST:PORT`, `ws:HOST:PORT`, `wss:HOST:PORT`.
 * The port may be left out for tls, ws and wss (then 5061, 80, 443: TRANSPORT_INFO's default);
 * udp and tcp name theirs. Throws Error with a short reason.
 */
export function parseListen(s: string): ListenAddr {
  const m = /^(udp|tcp|tls|wss|ws):(.+)$/i.exec(s.trim());
  if (!m) throw new Error(`expected udp|tcp|tls|ws|wss:HOST:PORT, got "${s}"`);
  const transport = m[1]!.toLowerCase() as Transport;
  const rest = m[2]!;
  if (transport !== 'udp' && transport !== 'tcp' && (/^[^:[\]\s]+$/.test(rest) || /^\[[^\]]+\]$/.test(rest))) {
    const host = rest.startsWith('[') ? rest.slice(1, -1) : rest;
    if (rest.startsWith('[') && isIP(host) !== 6) throw new Error(`invalid IPv6 address "${host}" in "${s}"`);
    return { transport, host, port: TRANSPORT_INFO[transport].defaultPort };
  }
  const hp = parseHostPort(rest);
  return { transport, host: hp.host, port: hp.port };
}

/**
 * Parse `sqlite:PATH` (also `sqlite://PATH`) or `mysql://USER:PASS@HOST[:PORT]/DB`
 * (user and password may be percent-encoded; port defaults to 3306).
 */
export function parseDbUrl(s: string): DbUrl {
  const str = s.trim();
  if (/^sqlite:/i.test(str)) {
    const path = str.replace(/^sqlite:(\/\/)?/i, '');
    if (!path) throw new Error(`missing path in "${s}" (expected sqlite:PATH)`);
    return { kind: 'sqlite', path };
  }
  if (/^mysql:\/\//i.test(str)) {
    let u: URL;
    try {
      u = new URL(str);
    } catch {
      throw new Error(`malformed MySQL URL (expected mysql://USER:PASS@HOST:PORT/DB)`);
    }
    const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
    if (!u.hostname) throw new Error('missing host in MySQL URL');
    if (!u.username) throw new Error('missing user in MySQL URL');
    if (!database || database.includes('/')) throw new Error('missing or invalid database name in MySQL URL');
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    return {
      kind: 'mysql',
      host,
      port: u.port ? parsePort(u.port, 'MySQL URL') : 3306,
      user: decodeURIComponent(u.username),
      password: decodeURIComponent(u.password),
      database,
    };
  }
  throw new Error(`expected sqlite:PATH or mysql://USER:PASS@HOST:PORT/DB, got "${s}"`);
}

/** Render a DbUrl for messages, never showing the password. */
export function describeDb(db: DbUrl): string {
  return db.kind === 'sqlite' ? `sqlite:${db.path}` : `mysql://${db.user}@${db.host}:${db.port}/${db.database}`;
}

function isCidr(s: string): boolean {
  const [ip, prefix, extra] = s.split('/');
  if (extra !== undefined || !ip) return false;
  const v = isIP(ip);
  if (v === 0) return false;
  if (prefix === undefined) return true;
  if (!/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (v === 4 ? 32 : 128);
}

/** Wrap a throwing parser as a zod transform that reports a custom issue. */
function parsed<T>(fn: (s: string) => T) {
  return z.string().transform((s, ctx): T => {
    try {
      return fn(s);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  });
}

const int = (min: number) => z.number().int().min(min);
const cidr = z.string().refine(isCidr, { message: 'expected an IP or CIDR (e.g. 10.0.0.0/8)' });

/** A secret sent in an HTTP header or used as a key: printable ASCII without spaces, at least 16 characters. */
const SECRET_RE = /^[\x21-\x7e]{16,}$/;

const AdminSchema = z.strictObject({
  /** Bearer token for the admin verbs; null: generated into <state_dir>/admin.token. */
  token: z
    .string()
    .nullable()
    .refine((t) => t === null || SECRET_RE.test(t), { message: 'must be at least 16 printable characters without spaces' }),
  /** Host header values (HOST:PORT) accepted for admin verbs besides the listen address and loopback. */
  allowed_hosts: z.array(z.string().min(1).transform((h) => h.toLowerCase())),
});

const LimitsSchema = z.strictObject({
  max_message_size: int(512),
  max_headers: int(1),
  max_header_line: int(64),
  max_vias: int(1),
  tcp_max_connections: int(1),
  tcp_max_per_ip: int(1),
  tcp_idle_timeout_ms: int(1),
  tcp_msg_timeout_ms: int(1),
  tcp_max_buffer: int(1024),
  max_transactions: int(1),
});

const TimersSchema = z
  .strictObject({
    t1_ms: int(1),
    t2_ms: int(1),
    t4_ms: int(1),
    timer_c_ms: int(1),
    trying_ms: int(0),
  })
  .refine((t) => t.t2_ms >= t.t1_ms, { message: 'must be >= timers.t1_ms', path: ['t2_ms'] });

const AuthSchema = z.strictObject({
  enabled: z.boolean(),
  algorithms: z.array(z.enum(DIGEST_ALGORITHMS)).min(1),
  qop: z.enum(['auth', 'none']),
  nonce_lifetime_s: int(1),
  /** null: loaded from (or generated into) <state_dir>/auth.secret by resolveSecrets. */
  secret: z.string().min(16).nullable(),
  check_uri: z.boolean(),
  credential_cache_ttl_ms: int(0),
  trusted_ips: z.array(cidr),
  nc_window: int(1),
});

const RegistrarSchema = z
  .strictObject({
    min_expires: int(0),
    default_expires: int(1),
    max_expires: int(1),
    max_contacts: int(0),
    nat_received: z.boolean(),
  })
  .refine((r) => r.min_expires <= r.max_expires, {
    message: 'must be <= registrar.max_expires',
    path: ['min_expires'],
  });

const LocationSchema = z.strictObject({
  db_mode: z.enum(DB_MODES),
  expire_interval_s: int(1),
  flush_interval_ms: int(10),
  retry_max_ms: int(10),
  final_flush_ms: int(0),
});

const DbPoolSchema = z.strictObject({
  connections: int(1),
  queue_limit: int(1),
  query_timeout_ms: int(1),
});

const FloodSchema = z.strictObject({
  enabled: z.boolean(),
  window_ms: int(1),
  max_requests: int(0),
  ban_s: int(1),
  /** never limited, in addition to auth.trusted_ips. */
  exempt: z.array(cidr),
  max_sources: int(1),
});

/** Largest UDP socket buffer accepted (bytes); the kernel caps lower anyway (net.core.rmem_max / wmem_max). */
export const MAX_UDP_BUFFER_BYTES = 1024 * 1024 * 1024;

const UdpSchema = z.strictObject({
  /** SO_RCVBUF requested for every UDP socket; 0 keeps the OS default (net.core.rmem_default). */
  recv_buffer_bytes: int(0).max(MAX_UDP_BUFFER_BYTES),
  /** SO_SNDBUF requested for every UDP socket; 0 keeps the OS default (net.core.wmem_default). */
  send_buffer_bytes: int(0).max(MAX_UDP_BUFFER_BYTES),
});

export const TLS_MIN_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;

const TlsSchema = z.strictObject({
  /** certificate chain (PEM file); required when a tls listener is configured. Env: SIPD_TLS_CERT. */
  cert: z.string().min(1).nullable(),
  /** private key (PEM file). Env: SIPD_TLS_KEY. */
  key: z.string().min(1).nullable(),
  /** CA bundle (PEM file) verifying peers; null: the system / Node default roots. */
  ca: z.string().min(1).nullable(),
  /** request a client certificate and refuse clients whose certificate does not verify (trunks). */
  verify_client: z.boolean(),
  /** outbound: verify the server certificate against `ca` and the target name. */
  verify_server: z.boolean(),
  min_version: z.enum(TLS_MIN_VERSIONS),
  /** OpenSSL cipher list (TLS 1.2); null: Node's default. */
  ciphers: z.string().min(1).nullable(),
  handshake_timeout_ms: int(1),
});

/** WebSocket listeners (ws:, wss: in listen; RFC 7118). */
const WsSchema = z.strictObject({
  /** allowed Origin values of the pages a browser phone runs on (scheme://host[:port]); empty: any. */
  origins: z.array(
    z
      .string()
      .regex(/^[a-z][a-z0-9+.-]*:\/\/[^/\s]+\/?$/i, 'expected scheme://host[:port]')
      .transform((o) => o.replace(/\/$/, '')),
  ),
  /** the only HTTP path accepted for the handshake (e.g. /ws); null: any path. */
  path: z.string().regex(/^\/\S*$/, 'expected a path starting with /').nullable(),
  /** ping every this many ms; a connection that stays silent until the next ping is closed. 0: off. */
  ping_interval_ms: int(0),
  /** accepted WebSocket (TCP) connections in total, handshakes included. */
  max_connections: int(1),
  /** accepted WebSocket (TCP) connections per source IP. */
  max_per_ip: int(1),
  /** from accept to a completed WebSocket handshake. */
  handshake_timeout_ms: int(1),
});

const ScannersSchema = z.strictObject({
  enabled: z.boolean(),
  user_agents: z.array(z.string().min(1)),
});

/** The start-up warm-up (src/warmup.ts): synthetic traffic through a throwaway core before the sockets open; 0 disables. */
const WarmupSchema = z.strictObject({
  /** REGISTERs (401, then 200) run through the throwaway core. */
  registers: int(0).max(100_000),
  /** calls (INVITE/407/ACK/INVITE/100/180/200/ACK/BYE/200) run through it. */
  calls: int(0).max(100_000),
  /** wall-time budget (ms): the warm-up stops early when it is spent. */
  max_ms: int(0).max(60_000),
});

export const ConfigSchema = z.strictObject({
  listen: z.array(parsed(parseListen)).min(1),
  advertise: z.string().min(1).nullable(),
  domains: z.array(z.string().min(1).transform((d) => d.toLowerCase())).min(1),
  db: parsed(parseDbUrl),
  metrics: z
    .string()
    .nullable()
    .transform((s, ctx): HostPort | null => {
      if (s === null || s === '' || s === 'off') return null;
      try {
        return parseHostPort(s);
      } catch (e) {
        ctx.addIssue({ code: 'custom', message: (e as Error).message });
        return z.NEVER;
      }
    }),
  log_level: z.enum(LOG_LEVELS),
  state_dir: z.string().min(1),
  admin: AdminSchema,
  limits: LimitsSchema,
  timers: TimersSchema,
  auth: AuthSchema,
  registrar: RegistrarSchema,
  location: LocationSchema,
  db_pool: DbPoolSchema,
  flood: FloodSchema,
  scanners: ScannersSchema,
  udp: UdpSchema,
  tls: TlsSchema,
  ws: WsSchema,
  shutdown_grace_ms: int(0),
  warmup: WarmupSchema,
}).superRefine((c, ctx) => {
  // wss: listeners use the same certificate as tls: ones
  const secure = c.listen.find((l) => l.transport === 'tls' || l.transport === 'wss');
  if (secure === undefined) return;
  for (const k of ['cert', 'key'] as const) {
    if (c.tls[k] === null) ctx.addIssue({ code: 'custom', path: ['tls', k], message: `required for the ${secure.transport} listener (set tls.${k} or SIPD_TLS_${k.toUpperCase()})` });
  }
});

/** The validated configuration (YAML key names; listen/db/metrics parsed). */
export type Config = z.output<typeof ConfigSchema>;

export interface LoadConfigOptions {
  /** `--config FILE`; overrides the defaults file. */
  file?: string;
  /** Environment to read SIPD_* from; defaults to process.env. Pass {} to ignore the environment. */
  env?: NodeJS.ProcessEnv;
  /** Alternative defaults file (tests); defaults to config/default.yaml of this package. */
  defaultsFile?: string;
}

/** config/default.yaml of the package (works from src/ via tsx and from dist/). */
export function defaultConfigPath(): string {
  return fileURLToPath(new URL('../config/default.yaml', import.meta.url));
}

type Raw = Record<string, unknown>;

function isPlainObject(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function readYaml(file: string): Raw {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError('', `cannot read ${file}: ${err.code ?? err.message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    const first = (e as Error).message.split('\n')[0];
    throw new ConfigError('', `${file}: invalid YAML: ${first}`);
  }
  if (doc === null || doc === undefined) return {};
  if (!isPlainObject(doc)) throw new ConfigError('', `${file}: expected a mapping at the top level`);
  return doc;
}

/** Deep merge: objects merge key by key, everything else (incl. arrays) is replaced. */
function merge(base: Raw, over: Raw): Raw {
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isPlainObject(b) && isPlainObject(v) ? merge(b, v) : v;
  }
  return out;
}

function commaList(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
}

/** Top-level key -> env var that set it (for error messages). */
type EnvSources = Map<string, string>;

function envLayer(env: NodeJS.ProcessEnv): { layer: Raw; sources: EnvSources } {
  const layer: Raw = {};
  const sources: EnvSources = new Map();
  const set = (key: string, name: string, value: unknown): void => {
    layer[key] = value;
    sources.set(key, name);
  };
  if (env.SIPD_LISTEN !== undefined) set('listen', 'SIPD_LISTEN', commaList(env.SIPD_LISTEN));
  if (env.SIPD_DB !== undefined) set('db', 'SIPD_DB', env.SIPD_DB);
  if (env.SIPD_DOMAINS !== undefined) set('domains', 'SIPD_DOMAINS', commaList(env.SIPD_DOMAINS));
  if (env.SIPD_METRICS !== undefined) {
    const m = env.SIPD_METRICS.trim();
    set('metrics', 'SIPD_METRICS', m === '' || m.toLowerCase() === 'off' ? null : m);
  }
  if (env.SIPD_LOG_LEVEL !== undefined) set('log_level', 'SIPD_LOG_LEVEL', env.SIPD_LOG_LEVEL.trim().toLowerCase());
  if (env.SIPD_STATE_DIR !== undefined) set('state_dir', 'SIPD_STATE_DIR', env.SIPD_STATE_DIR.trim());
  // nested key: merged into the admin group (an empty value counts as unset)
  const token = env.SIPD_ADMIN_TOKEN?.trim();
  if (token !== undefined && token !== '') {
    layer.admin = { token };
    sources.set('admin.token', 'SIPD_ADMIN_TOKEN');
  }
  // nested numeric keys: a value that is not a plain integer is passed on as text, for the schema
  // to reject with the variable named
  const udp: Raw = {};
  for (const [name, key] of [
    ['SIPD_UDP_RECV_BUFFER_BYTES', 'recv_buffer_bytes'],
    ['SIPD_UDP_SEND_BUFFER_BYTES', 'send_buffer_bytes'],
  ] as const) {
    const v = env[name]?.trim();
    if (v === undefined || v === '') continue;
    udp[key] = /^\d{1,12}$/.test(v) ? Number(v) : v;
    sources.set(`udp.${key}`, name);
  }
  if (Object.keys(udp).length > 0) layer.udp = udp;
  const tls: Raw = {};
  for (const [name, key] of [
    ['SIPD_TLS_CERT', 'cert'],
    ['SIPD_TLS_KEY', 'key'],
  ] as const) {
    const v = env[name]?.trim();
    if (v === undefined || v === '') continue;
    tls[key] = v;
    sources.set(`tls.${key}`, name);
  }
  if (Object.keys(tls).length > 0) layer.tls = tls;
  return { layer, sources };
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

function getPath(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (Array.isArray(cur) && typeof p === 'number') cur = cur[p];
    else if (isPlainObject(cur)) cur = cur[String(p)];
    else return undefined;
  }
  return cur;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (key missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

function issueReason(issue: z.core.$ZodIssue, value: unknown): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected}, got ${describeValue(value)}`;
    case 'too_small':
      if (issue.origin === 'array') return `expected at least ${String(issue.minimum)} item(s)`;
      if (issue.origin === 'string') return `must not be shorter than ${String(issue.minimum)} character(s)`;
      return `must be >= ${String(issue.minimum)}, got ${describeValue(value)}`;
    case 'too_big':
      return `must be <= ${String(issue.maximum)}, got ${describeValue(value)}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((x) => String(x)).join(', ')}, got ${describeValue(value)}`;
    default:
      return issue.message;
  }
}

/**
 * Load and validate the configuration. Throws ConfigError (one-line message
 * naming the key path) on any problem.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const defaults = readYaml(opts.defaultsFile ?? defaultConfigPath());
  const fileRaw = opts.file ? readYaml(opts.file) : {};
  const { layer, sources } = envLayer(env);
  const raw = merge(merge(defaults, fileRaw), layer);

  const result = ConfigSchema.safeParse(raw);
  if (result.success) return result.data;

  const issue = result.error.issues[0]!;
  let path = [...issue.path];
  let reason: string;
  if (issue.code === 'unrecognized_keys') {
    path = [...path, issue.keys[0]!];
    reason = issue.keys.length > 1 ? `unknown keys ${issue.keys.join(', ')}` : 'unknown key';
  } else {
    reason = issueReason(issue, getPath(raw, path));
  }
  const top = path.length > 0 ? String(path[0]) : '';
  const key = formatPath(path);
  if (sources.has(key)) reason += ` (from ${sources.get(key)!})`;
  else if (sources.has(top)) reason += ` (from ${sources.get(top)!})`;
  else if (opts.file && getPath(fileRaw, path) !== undefined) reason += ` (in ${opts.file})`;
  const more = result.error.issues.length - 1;
  if (more > 0) reason += ` (+${more} more problem${more > 1 ? 's' : ''})`;
  throw new ConfigError(formatPath(path), reason);
}

// ------------------------------------------------------------------------------------ kernel counters

/** Where the kernel's UDP counters are read (Linux procfs). */
export const PROC_NET_SNMP = '/proc/net/snmp';

/**
 * The text of /proc/net/snmp (read at each metrics scrape, through the function the composition
 * root hands to the metrics module); undefined when it cannot be read (not Linux, no /proc).
 */
export function readProcNetSnmp(path: string = PROC_NET_SNMP): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

// ------------------------------------------------------------------------------------ secret files

/** Largest secret file read (a token or key, one line). */
const MAX_SECRET_FILE = 4096;

/**
 * Read a secret file (one line; surrounding whitespace dropped). Undefined when it does not exist.
 * Throws ConfigError (one line, naming the file, never its content) when it is readable or
 * writable by group or others (the secret may have leaked: sipd refuses rather than fixing the
 * mode silently), unreadable, or not a valid secret.
 */
export function readSecretFile(path: string): string | undefined {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') return undefined;
    throw new ConfigError('state_dir', `cannot read ${path}: ${err.code ?? err.message}`);
  }
  if (!st.isFile()) throw new ConfigError('state_dir', `${path} is not a regular file`);
  if ((st.mode & 0o077) !== 0) {
    throw new ConfigError('state_dir', `${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); run chmod 600 ${path}`);
  }
  if (st.size > MAX_SECRET_FILE) throw new ConfigError('state_dir', `${path} is too large for a secret (${st.size} bytes)`);
  let text: string;
  try {
    text = readFileSync(path, 'latin1');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError('state_dir', `cannot read ${path}: ${err.code ?? err.message}`);
  }
  const value = text.trim();
  if (!SECRET_RE.test(value)) {
    throw new ConfigError('state_dir', `${path} does not hold a valid secret (at least 16 printable characters); delete it to have a new one generated`);
  }
  return value;
}

/**
 * Load the secret in `path`, or create the file (mode 0600, its directory 0700 when missing) with
 * `generate()` when it does not exist. Creation is atomic: the value is written to a temporary file
 * opened with O_CREAT|O_EXCL, then hard-linked to `path` (link fails when `path` exists, like
 * O_EXCL, and the file is complete when it appears), so processes starting at once all end up
 * with the value of the first one. Throws ConfigError (one line) on any problem.
 */
export function loadOrCreateSecretFile(path: string, generate: () => string): { value: string; created: boolean } {
  const existing = readSecretFile(path);
  if (existing !== undefined) return { value: existing, created: false };
  const value = generate();
  if (!SECRET_RE.test(value)) throw new ConfigError('state_dir', `generated secret for ${path} is not valid`);
  const fail = (what: string, e: unknown): never => {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError('state_dir', `cannot ${what}: ${err.code ?? err.message}`);
  };
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    fail(`create ${dir}`, e);
  }
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let created = false;
  try {
    let fd: number | undefined;
    try {
      fd = openSync(tmp, 'wx', 0o600);
      writeSync(fd, `${value}\n`);
      fsyncSync(fd);
    } catch (e) {
      fail(`write ${tmp}`, e);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    try {
      linkSync(tmp, path);
      created = true;
    } catch (e) {
      // another process created it first: use theirs
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') fail(`create ${path}`, e);
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
  }
  const stored = readSecretFile(path);
  if (stored === undefined) throw new ConfigError('state_dir', `${path} vanished while being created`);
  return { value: stored, created };
}

/** The admin token and where it came from: `explicit` (admin.token or SIPD_ADMIN_TOKEN) or the generated file. */
export interface AdminToken {
  readonly value: string;
  readonly explicit: boolean;
}

/** Secrets the server needs, resolved from the configuration and the state directory. */
export interface Secrets {
  /** HMAC key for digest nonces (and anything else signed by this server), as a string. */
  readonly authSecret: string;
  /** Bearer token for the admin verbs; null when there is no metrics endpoint to carry them. */
  readonly admin: AdminToken | null;
}

export const AUTH_SECRET_FILE = 'auth.secret';
export const ADMIN_TOKEN_FILE = 'admin.token';

/** Path of a secret file in the state directory. */
export function statePath(config: Pick<Config, 'state_dir'>, file: string): string {
  return join(config.state_dir, file);
}

/**
 * The server's secrets (called by the sipd CLI before startServer): `auth.secret`, else the
 * content of <state_dir>/auth.secret (32 random bytes, hex; created on first start so nonces stay
 * valid across restarts); `admin.token` (or SIPD_ADMIN_TOKEN), else <state_dir>/admin.token
 * (created likewise; only when the metrics endpoint is on). Throws ConfigError.
 */
export function resolveSecrets(config: Config, random: (n: number) => Buffer = randomBytes): Secrets {
  const gen = (): string => random(32).toString('hex');
  const authSecret = config.auth.secret ?? loadOrCreateSecretFile(statePath(config, AUTH_SECRET_FILE), gen).value;
  let admin: AdminToken | null = null;
  if (config.admin.token !== null) admin = { value: config.admin.token, explicit: true };
  else if (config.metrics !== null) admin = { value: loadOrCreateSecretFile(statePath(config, ADMIN_TOKEN_FILE), gen).value, explicit: false };
  return { authSecret, admin };
}

/**
 * The admin token a client (sipctl) sends: `admin.token` / SIPD_ADMIN_TOKEN, else the server's
 * generated <state_dir>/admin.token (read only, never created). `{ problem }` when there is none
 * or the file cannot be used (a one-line reason).
 */
export function adminTokenForClient(config: Config): { token: string } | { problem: string } {
  if (config.admin.token !== null) return { token: config.admin.token };
  const path = statePath(config, ADMIN_TOKEN_FILE);
  try {
    const t = readSecretFile(path);
    if (t === undefined) return { problem: `no admin token (admin.token and SIPD_ADMIN_TOKEN unset, ${path} missing)` };
    return { token: t };
  } catch (e) {
    return { problem: e instanceof ConfigError ? e.message.replace(/^config: state_dir: /, '') : String(e) };
  }
}

// ------------------------------------------------------------------------------------ TLS files

/** Largest certificate, key or CA bundle file read (bytes). */
export const MAX_TLS_FILE = 1024 * 1024;

/** PEM texts of the TLS settings (shape of src/transport/tls-context.ts TlsMaterial). */
export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
}

function readTlsFile(key: 'cert' | 'key' | 'ca', path: string): string {
  let text: string;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new ConfigError(`tls.${key}`, `${path}: not a regular file`);
    if (st.size > MAX_TLS_FILE) throw new ConfigError(`tls.${key}`, `${path}: too large (${st.size} bytes)`);
    text = readFileSync(path, 'latin1');
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EACCES' ? 'permission denied' : (err.code ?? err.message);
    throw new ConfigError(`tls.${key}`, `${path}: ${why}`);
  }
  if (!text.includes('-----BEGIN ')) throw new ConfigError(`tls.${key}`, `${path}: not a PEM file`);
  return text;
}

/**
 * Read the certificate, key and CA bundle named by the `tls` settings (at start and at each
 * reload). Throws ConfigError, one line naming the key and the file, e.g.
 * "config: tls.cert: /x/y.pem: no such file". Whether the PEM is a usable certificate and key is
 * checked by the transport (TlsContexts).
 */
export function loadTlsFiles(tls: Config['tls']): TlsFiles {
  if (tls.cert === null) throw new ConfigError('tls.cert', 'not set (set tls.cert or SIPD_TLS_CERT)');
  if (tls.key === null) throw new ConfigError('tls.key', 'not set (set tls.key or SIPD_TLS_KEY)');
  const cert = readTlsFile('cert', tls.cert);
  const key = readTlsFile('key', tls.key);
  return tls.ca === null ? { cert, key } : { cert, key, ca: readTlsFile('ca', tls.ca) };
}

/**
 * Call `onChange` (once per burst, `debounceMs` after the last change) when any of the TLS files
 * changes (polled with fs.watchFile every `intervalMs`: stat follows symlinks, so a Kubernetes
 * secret swap or an atomic rename is seen). Returns the function that stops watching.
 */
export function watchTlsFiles(tls: Config['tls'], onChange: () => void, intervalMs = 2000, debounceMs = 300): () => void {
  const paths = [tls.cert, tls.key, tls.ca].filter((p): p is string => p !== null);
  let timer: NodeJS.Timeout | undefined;
  const changed = (cur: { mtimeMs: number; ino: number; size: number }, prev: { mtimeMs: number; ino: number; size: number }): void => {
    if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      onChange();
    }, debounceMs);
    timer.unref();
  };
  for (const p of paths) watchFile(p, { interval: intervalMs, persistent: false }, changed);
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    for (const p of paths) unwatchFile(p, changed);
  };
}
