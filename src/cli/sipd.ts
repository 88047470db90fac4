#!/usr/bin/env node
/** sipd: the server. `sipd [--config FILE]`; environment SIPD_* overrides (see README). */
import { Command } from 'commander';
import { ConfigError, loadConfig, resolveSecrets, type Secrets } from '../config.js';
import { startServer } from '../server.js';

const program = new Command()
  .name('sipd')
  .description('SIP proxy and registrar (Kamailio-compatible subscriber/location tables)')
  .option('-c, --config <file>', 'YAML configuration file (overrides config/default.yaml)')
  .showHelpAfterError();
program.parse();
const opts = program.opts<{ config?: string }>();

// a closed log pipe (e.g. `sipd | head`) must not wedge or kill the server
process.stdout.on('error', () => undefined);

function fail(msg: string): never {
  process.stderr.write(`sipd: ${msg.split('\n')[0]}\n`);
  process.exit(1);
}

let config;
let secrets: Secrets;
try {
  config = loadConfig({ file: opts.config });
  // auth.secret / admin.token, or the files in state_dir (created on first start)
  secrets = resolveSecrets(config);
} catch (e) {
  fail(e instanceof ConfigError ? e.message : `config: ${(e as Error).message}`);
}

try {
  const server = await startServer(config, { secrets });
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    server.log.info({ signal: sig }, 'signal received');
    server
      .stop()
      .then(() => process.exit(0))
      .catch((e: unknown) => fail(`shutdown: ${(e as Error).message}`));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
} catch (e) {
  fail((e as Error).message);
}
