/**
 * Child process for the concurrent-creation test of loadOrCreateSecretFile:
 *   node --import tsx test/helpers/secret-file-child.ts PATH START_AT_MS
 * waits until START_AT_MS (so that every child calls at about the same moment), then prints
 * `{"value":...,"created":...}` on one line.
 */
import { loadOrCreateSecretFile } from '../../src/config.js';
import { randomBytes } from 'node:crypto';

const [path, startAt] = process.argv.slice(2);
const wait = Math.max(0, Number(startAt) - Date.now());
setTimeout(() => {
  const r = loadOrCreateSecretFile(path!, () => randomBytes(32).toString('hex'));
  process.stdout.write(`${JSON.stringify(r)}\n`);
}, Math.min(wait, 10_000));
