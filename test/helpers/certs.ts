/**
 * Test certificates made with the `openssl` CLI in a temporary directory: a CA, server and client
 * certificates signed by it, and a self-signed "rogue" pair nobody trusts. Each `make*` call writes
 * fresh keys (EC P-256: fast), so two calls give two different certificates.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
  /** PEM texts. */
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TestPki {
  readonly dir: string;
  /** the CA certificate file and PEM. */
  readonly ca: CertFiles;
  /** a certificate signed by the CA: CN `cn`, SANs (e.g. ['IP:127.0.0.1', 'DNS:localhost']). */
  issue(name: string, cn: string, sans: readonly string[], usage?: 'server' | 'client'): CertFiles;
  /** a self-signed certificate (not from the CA). */
  selfSigned(name: string, cn: string, sans: readonly string[]): CertFiles;
  cleanup(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

function files(dir: string, name: string): CertFiles {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}

function newKey(dir: string, name: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`], dir);
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'sipd-pki-'));
  newKey(dir, 'ca');
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '2', '-subj', '/CN=sipd test CA', '-out', 'ca.crt', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  let serial = 1;
  const ext = (name: string, sans: readonly string[], usage: 'server' | 'client' | 'both'): string => {
    const f = join(dir, `${name}.ext`);
    const eku = usage === 'server' ? 'serverAuth' : usage === 'client' ? 'clientAuth' : 'serverAuth,clientAuth';
    writeFileSync(f, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=${eku}\n${sans.length > 0 ? `subjectAltName=${sans.join(',')}\n` : ''}`);
    return f;
  };
  return {
    dir,
    ca: files(dir, 'ca'),
    issue(name, cn, sans, usage = 'server') {
      newKey(dir, name);
      openssl(['req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`], dir);
      openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', String(serial++ + Date.now()), '-days', '2', '-sha256', '-extfile', ext(name, sans, usage === 'server' ? 'both' : 'client'), '-out', `${name}.crt`], dir);
      return files(dir, name);
    },
    selfSigned(name, cn, sans) {
      newKey(dir, name);
      openssl(['req', '-x509', '-new', '-key', `${name}.key`, '-sha256', '-days', '2', '-subj', `/CN=${cn}`, '-out', `${name}.crt`, ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.join(',')}`] : [])], dir);
      return files(dir, name);
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
