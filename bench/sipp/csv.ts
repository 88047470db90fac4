/**
 * SIPp injection-file generators shared by the e2e tests and the load runs.
 *
 * SIPp 3.6.1 does not expand nested keywords such as
 * `[authentication username=[field0] password=[field1]]`, so the whole
 * authentication keyword is written into a field (it IS expanded there).
 *
 * Layouts (fields separated by ';'):
 *   users: user;domain;[authentication username=user password=pw]     (reg.xml, unreg.xml, reg-badpw.xml)
 *   calls: caller;domain;[authentication username=caller password=pw];callee   (uac-*.xml)
 *
 * CLI:
 *   tsx bench/sipp/csv.ts users COUNT DOMAIN [PREFIX=user] [PWPREFIX=pw]  > users.csv
 *   tsx bench/sipp/csv.ts calls COUNT DOMAIN [PREFIX=user] [PWPREFIX=pw]  > calls.csv
 *     (calls: userN calls user(N+COUNT), i.e. the callers are the first COUNT users)
 */
import { pathToFileURL } from 'node:url';

export interface Credential {
  user: string;
  password: string;
}

const FIELD_FORBIDDEN = /[;\r\n\]\[ ]/;

function checkField(value: string, what: string): string {
  if (value.length === 0 || FIELD_FORBIDDEN.test(value)) {
    throw new Error(`${what} ${JSON.stringify(value)} cannot be written into a SIPp injection field`);
  }
  return value;
}

export function authField(user: string, password: string): string {
  return `[authentication username=${checkField(user, 'user')} password=${checkField(password, 'password')}]`;
}

/** One line per user, read in order (SEQUENTIAL). */
export function usersCsv(users: readonly Credential[], domain: string): string {
  const lines = users.map((u) => `${checkField(u.user, 'user')};${checkField(domain, 'domain')};${authField(u.user, u.password)}`);
  return ['SEQUENTIAL', ...lines].join('\n') + '\n';
}

/** One line per call: caller (with credentials) calls callee. */
export function callsCsv(calls: readonly { from: Credential; to: string }[], domain: string): string {
  const lines = calls.map(
    (c) => `${checkField(c.from.user, 'user')};${checkField(domain, 'domain')};${authField(c.from.user, c.from.password)};${checkField(c.to, 'callee')}`,
  );
  return ['SEQUENTIAL', ...lines].join('\n') + '\n';
}

/** user1..userN with passwords pw1..pwN (the prefixes are configurable). */
export function numberedUsers(count: number, prefix = 'user', pwPrefix = 'pw', first = 1): Credential[] {
  return Array.from({ length: count }, (_, i) => ({ user: `${prefix}${first + i}`, password: `${pwPrefix}${first + i}` }));
}

function main(argv: string[]): number {
  const [kind, countStr, domain, prefix = 'user', pwPrefix = 'pw'] = argv;
  const count = Number(countStr);
  if (!(kind === 'users' || kind === 'calls') || !Number.isInteger(count) || count < 1 || !domain) {
    process.stderr.write('usage: csv.ts users|calls COUNT DOMAIN [PREFIX] [PWPREFIX]\n');
    return 2;
  }
  if (kind === 'users') {
    process.stdout.write(usersCsv(numberedUsers(count, prefix, pwPrefix), domain));
  } else {
    const callers = numberedUsers(count, prefix, pwPrefix);
    const callees = numberedUsers(count, prefix, pwPrefix, count + 1);
    process.stdout.write(callsCsv(callers.map((from, i) => ({ from, to: callees[i]!.user })), domain));
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
