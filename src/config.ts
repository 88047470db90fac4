/**
 * Configuration: the only module that reads configuration files and the
 * environment.
 *
 * Precedence (later wins): config/default.yaml (next to the package, not the
 * working directory) < `--config FILE` < environment variables
 * (SIPD_LISTEN, SIPD_DB, SIPD_DOMAINS, SIPD_METRICS, SIPD_LOG_LEVEL).
 *
 * The resulting object keeps the YAML key names (snake_case), so one setting
 * has one name in the file, in error messages and in code. A few string
 * values are parsed into structures: `listen` (ListenAddr[]), `db` (DbUrl),
 * `metrics` (HostPort | null).
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

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

export type Transport = 'udp' | 'tcp';

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

/** Parse `udp:127.0.0.1:5060`, `tcp:[::1]:5060`. Throws Error with a short reason. */
export function parseListen(s: string): ListenAddr {
  const m = /^(udp|tcp):(.+)$/i.exec(s.trim());
  if (!m) throw new Error(`expected udp|tcp:HOST:PORT, got "${s}"`);
  const hp = parseHostPort(m[2]!);
  return { transport: m[1]!.toLowerCase() as Transport, host: hp.host, port: hp.port };
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

const LimitsSchema = z.strictObject({
  max_message_size: int(512),
  max_headers: int(1),
  max_header_line: int(64),
  max_vias: int(1),
  tcp_max_connections: int(1),
  tcp_max_per_ip: int(1),
  tcp_idle_timeout_ms: int(1),
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
  /** null: the auth layer generates a random secret per start. */
  secret: z.string().min(16).nullable(),
  check_uri: z.boolean(),
  credential_cache_ttl_ms: int(0),
  trusted_ips: z.array(z.string().refine(isCidr, { message: 'expected an IP or CIDR (e.g. 10.0.0.0/8)' })),
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
  limits: LimitsSchema,
  timers: TimersSchema,
  auth: AuthSchema,
  registrar: RegistrarSchema,
  location: LocationSchema,
  db_pool: DbPoolSchema,
  flood: FloodSchema,
  shutdown_grace_ms: int(0),
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
  if (sources.has(top)) reason += ` (from ${sources.get(top)!})`;
  else if (opts.file && getPath(fileRaw, path) !== undefined) reason += ` (in ${opts.file})`;
  const more = result.error.issues.length - 1;
  if (more > 0) reason += ` (+${more} more problem${more > 1 ? 's' : ''})`;
  throw new ConfigError(formatPath(path), reason);
}
