#!/usr/bin/env node
/**
 * sipctl: subscriber and registration admin, modelled on kamctl.
 *
 *   sipctl [--config FILE] add USER@DOMAIN PASSWORD
 *   sipctl [--config FILE] rm USER@DOMAIN
 *   sipctl [--config FILE] passwd USER@DOMAIN PASSWORD
 *   sipctl [--config FILE] show [USER@DOMAIN] [--show-passwords]
 *   sipctl [--config FILE] ul show [AOR]
 *   sipctl [--config FILE] ul rm AOR
 *   sipctl [--config FILE] db init
 *
 * Reads the same configuration as sipd (config/default.yaml < --config FILE <
 * SIPD_* environment), so SIPD_DB=mysql://... points it at MySQL. `ul rm` also
 * tells a running sipd, through its HTTP endpoint (`metrics`), with the admin
 * token (admin.token / SIPD_ADMIN_TOKEN, else <state_dir>/admin.token); when it
 * cannot, it still removes from the database and says so in one line.
 *
 * Exit status: 0 success; 1 the operation failed (user exists, unknown user,
 * no registrations); 2 bad usage or input (malformed AOR, empty password, bad
 * configuration); 3 database unreachable or not initialised. Every failure
 * prints exactly one line on stderr.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { adminTokenForClient, ConfigError, type Config, describeDb, loadConfig } from '../config.js';
import { type Binding, StoreError, type Stores, initSchema, openStores } from '../store/index.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_DB = 3;

class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}

const USER_RE = /^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$/;
const HOST_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const V6_RE = /^\[[0-9A-Fa-f:.]+\]$/;
const MAX_FIELD = 64; // Kamailio subscriber column widths

/** Parse `user@domain` (optionally `sip:user@domain`); the domain is lower-cased. */
export function parseAor(input: string): { username: string; domain: string; aor: string } {
  const s = input.trim().replace(/^sips?:/i, '');
  const at = s.lastIndexOf('@');
  const username = at > 0 ? s.slice(0, at) : '';
  const domain = at > 0 ? s.slice(at + 1).toLowerCase() : '';
  if (!username || !domain || !USER_RE.test(username) || !(HOST_RE.test(domain) || V6_RE.test(domain))) {
    throw new CliError(EXIT_USAGE, `malformed AOR "${input}" (expected USER@DOMAIN)`);
  }
  if (username.length > MAX_FIELD || domain.length > MAX_FIELD) {
    throw new CliError(EXIT_USAGE, `AOR "${input}" too long (user and domain are at most ${MAX_FIELD} characters)`);
  }
  return { username, domain, aor: `${username}@${domain}` };
}

function checkPassword(password: string): void {
  if (password.length === 0) throw new CliError(EXIT_USAGE, 'password must not be empty');
  if (password.length > MAX_FIELD) throw new CliError(EXIT_USAGE, `password too long (at most ${MAX_FIELD} characters)`);
}

function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

interface GlobalOpts {
  config?: string;
}

function config(program: Command): Config {
  const { config: file } = program.opts<GlobalOpts>();
  return loadConfig(file ? { file } : {});
}

/** Subscriber ops: no credential cache, no location preload. */
async function withStores<T>(cfg: Config, fn: (s: Stores) => Promise<T>): Promise<T> {
  const stores = await openStores({ db: cfg.db, db_pool: cfg.db_pool, location: { db_mode: 'db-only' } });
  try {
    return await fn(stores);
  } finally {
    await stores.close();
  }
}

function requireLocationDb(cfg: Config): void {
  if (cfg.location.db_mode === 'memory') {
    throw new CliError(EXIT_FAILED, 'location.db_mode is memory: registrations live only inside the running sipd');
  }
}

function formatBinding(b: Binding, now: number): string {
  const parts = [`  Contact: <${b.contact}>`, `expires=${Math.max(0, Math.round((b.expires - now) / 1000))}s`];
  if (b.q !== null) parts.push(`q=${b.q}`);
  parts.push(`callid=${b.callId}`, `cseq=${b.cseq}`);
  if (b.received) parts.push(`received=${b.received}`);
  if (b.path) parts.push(`path=${b.path.join(',')}`);
  if (b.socket) parts.push(`socket=${b.socket}`);
  if (b.instance) parts.push(`instance=${b.instance}`);
  if (b.regId !== undefined) parts.push(`reg-id=${b.regId}`);
  if (b.userAgent) parts.push(`ua="${b.userAgent}"`);
  return parts.join(' ');
}

function printBindings(bindings: Binding[], now: number): void {
  let current = '';
  for (const b of bindings) {
    if (b.aor !== current) {
      current = b.aor;
      out(`AOR: ${b.aor}`);
    }
    out(formatBinding(b, now));
  }
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('sipctl')
    .description('sipd subscriber and registration admin (like kamctl)')
    .option('-c, --config <file>', 'configuration file (overrides config/default.yaml; SIPD_* env overrides both)')
    .showHelpAfterError(false)
    // Set before the commands are added so that every subcommand inherits them.
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`sipctl: ${oneLine(str.replace(/^error: /, ''))}\n`) })
    .addHelpText(
      'after',
      '\nExit status: 0 ok, 1 operation failed, 2 bad usage or input, 3 database unreachable or not initialised.',
    );

  program
    .command('add')
    .description('add a subscriber (ha1/ha1b computed like kamctl; realm = domain)')
    .argument('<user@domain>', 'address of record')
    .argument('<password>', 'plain-text password')
    .action(async (aorArg: string, password: string) => {
      const { username, domain, aor } = parseAor(aorArg);
      checkPassword(password);
      const cfg = config(program);
      // '%' escapes in SIP URIs: the registrar and auth see the user part unescaped, so a stored
      // "a%41" would never be the user "a%41" a phone registers as
      if (username.includes('%')) throw new CliError(EXIT_USAGE, `user part must not contain "%" (it is an escape in SIP URIs): ${aorArg}`);
      // the digest realm is the served domain: a subscriber of another domain could never authenticate
      if (!cfg.domains.includes(domain)) {
        throw new CliError(EXIT_USAGE, `${domain} is not a domain this sipd serves (${cfg.domains.join(', ')}); add it to SIPD_DOMAINS or domains in the configuration first`);
      }
      await withStores(cfg, (s) => s.subscribers.add(username, domain, password));
      out(`added ${aor}`);
    });

  program
    .command('rm')
    .description('remove a subscriber')
    .argument('<user@domain>', 'address of record')
    .action(async (aorArg: string) => {
      const { username, domain, aor } = parseAor(aorArg);
      const removed = await withStores(config(program), (s) => s.subscribers.remove(username, domain));
      if (!removed) throw new CliError(EXIT_FAILED, `no such subscriber ${aor}`);
      out(`removed ${aor}`);
    });

  program
    .command('passwd')
    .description("change a subscriber's password (updates ha1/ha1b)")
    .argument('<user@domain>', 'address of record')
    .argument('<password>', 'new plain-text password')
    .action(async (aorArg: string, password: string) => {
      const { username, domain, aor } = parseAor(aorArg);
      checkPassword(password);
      const changed = await withStores(config(program), (s) => s.subscribers.setPassword(username, domain, password));
      if (!changed) throw new CliError(EXIT_FAILED, `no such subscriber ${aor}`);
      out(`password changed for ${aor}`);
    });

  program
    .command('show')
    .description('list subscribers, or show one')
    .argument('[user@domain]', 'only this subscriber')
    .option('--show-passwords', 'also print plain-text passwords')
    .action(async (aorArg: string | undefined, opts: { showPasswords?: boolean }) => {
      const line = (u: { username: string; domain: string; password: string }): string =>
        opts.showPasswords ? `${u.username}@${u.domain}\t${u.password}` : `${u.username}@${u.domain}`;
      if (aorArg !== undefined) {
        const { username, domain, aor } = parseAor(aorArg);
        const sub = await withStores(config(program), (s) => s.subscribers.get(username, domain));
        if (!sub) throw new CliError(EXIT_FAILED, `no such subscriber ${aor}`);
        out(line(sub));
        return;
      }
      const all = await withStores(config(program), (s) => s.subscribers.list());
      for (const sub of all) out(line(sub));
    });

  const ul = program.command('ul').description('registrations (user location)');
  ul.command('show')
    .description('show registered contacts, of all AORs or of one')
    .argument('[aor]', 'address of record user@domain')
    .action(async (aorArg: string | undefined) => {
      const cfg = config(program);
      requireLocationDb(cfg);
      const now = Date.now();
      if (aorArg !== undefined) {
        const { aor } = parseAor(aorArg);
        const bindings = await withStores(cfg, (s) => s.locations.lookup(aor));
        if (bindings.length === 0) throw new CliError(EXIT_FAILED, `no registrations for ${aor}`);
        printBindings(bindings, now);
        return;
      }
      const all = await withStores(cfg, (s) => s.locations.list());
      if (all.length === 0) out('no registrations');
      printBindings(all, now);
    });
  ul.command('rm')
    .description('remove all registered contacts of an AOR')
    .argument('<aor>', 'address of record user@domain')
    .action(async (aorArg: string) => {
      const cfg = config(program);
      requireLocationDb(cfg);
      const { aor } = parseAor(aorArg);
      const inDb = await withStores(cfg, (s) => s.locations.removeAll(aor));
      // a running sipd keeps registrations in memory: ask it too (through its HTTP endpoint), like kamctl uses RPC
      const server = await removeInRunningServer(cfg, aor);
      const inServer = 'removed' in server ? server.removed : 0;
      const n = Math.max(inDb, inServer);
      const note = 'problem' in server ? `running sipd not updated: ${server.problem}` : undefined;
      // failure: one line, with the note folded in; success: the result, and the note as a warning
      if (n === 0) throw new CliError(EXIT_FAILED, `no registrations for ${aor}${note !== undefined ? ` in the database (${note})` : ''}`);
      out(`removed ${n} contact${n === 1 ? '' : 's'} of ${aor}`);
      if (note !== undefined) process.stderr.write(`sipctl: warning: ${note}\n`);
    });

  const db = program.command('db').description('database administration');
  db.command('init')
    .description('create the tables (and MySQL database) if missing; idempotent')
    .action(async () => {
      const cfg = config(program);
      await initSchema(cfg.db);
      out(`schema ready (${describeDb(cfg.db)})`);
    });

  return program;
}

/**
 * Remove an AOR's bindings in a running sipd through the admin verb of its HTTP endpoint, with the
 * admin token (admin.token / SIPD_ADMIN_TOKEN, or the server's generated <state_dir>/admin.token).
 * `{ problem }` (one line) when the server could not be told: no endpoint, no token, no server
 * answering, or a refusal.
 */
async function removeInRunningServer(cfg: Config, aor: string): Promise<{ removed: number } | { problem: string }> {
  if (cfg.metrics === null) return { problem: 'its HTTP endpoint is off (metrics: off)' };
  const tok = adminTokenForClient(cfg);
  if ('problem' in tok) return { problem: tok.problem };
  // a wildcard listen address is reached on loopback (whose names the server's Host check accepts)
  const h = cfg.metrics.host === '0.0.0.0' ? '127.0.0.1' : cfg.metrics.host === '::' ? '::1' : cfg.metrics.host;
  const where = `${h.includes(':') ? `[${h}]` : h}:${cfg.metrics.port}`;
  let r: Response;
  try {
    r = await fetch(`http://${where}/location/${encodeURIComponent(aor)}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${tok.token}` },
      signal: AbortSignal.timeout(2000),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: unknown } }).cause;
    const code = typeof cause?.code === 'string' ? cause.code : (e as Error).name === 'TimeoutError' ? 'timed out' : (e as Error).message;
    return { problem: `no sipd answered at ${where} (${code})` };
  }
  let body: { removed?: unknown; error?: unknown } = {};
  try {
    body = (await r.json()) as typeof body;
  } catch {
    /* not our server, or no JSON body */
  }
  if (r.status === 401) return { problem: 'it refused the admin token (401)' };
  if (!r.ok) return { problem: `${where} answered ${r.status}${typeof body.error === 'string' ? `: ${oneLine(body.error)}` : ''}` };
  if (typeof body.removed !== 'number') return { problem: `${where} gave an unexpected answer` };
  return { removed: body.removed };
}

function oneLine(s: string): string {
  return s.split('\n')[0]!.trim();
}

/** Run sipctl with `argv` (without node and script); resolves to the exit status. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has already printed its one-line message (or the help).
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      return EXIT_USAGE;
    }
    let code = EXIT_FAILED;
    let msg: string;
    if (e instanceof CliError) {
      code = e.exitCode;
      msg = e.message;
    } else if (e instanceof ConfigError) {
      code = EXIT_USAGE;
      msg = e.message;
    } else if (e instanceof StoreError) {
      code = e.code === 'UNREACHABLE' || e.code === 'BUSY' || e.code === 'SCHEMA' ? EXIT_DB : e.code === 'INVALID' ? EXIT_USAGE : EXIT_FAILED;
      msg = e.message;
    } else {
      msg = e instanceof Error ? e.message : String(e);
    }
    process.stderr.write(`sipctl: ${oneLine(msg)}\n`);
    return code;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`sipctl: ${oneLine(e instanceof Error ? e.message : String(e))}\n`);
      process.exitCode = EXIT_FAILED;
    },
  );
}
