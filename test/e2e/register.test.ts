/**
 * REGISTER with digest (401 challenge, realm = domain), wrong passwords,
 * un-REGISTER, REGISTER over TCP: SIPp reg.xml / reg-badpw.xml / unreg.xml.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectSipp } from './expect-sipp.js';
import { SKIP_E2E, callsCsv, freePort, runSipp, startTarget, testUser, usersCsv, type Target } from './harness.js';

const N = 100;
const users = Array.from({ length: N }, (_, i) => testUser(`r${i + 1}`, `pw${i + 1}`));
const tcpUsers = users.slice(0, 10);
const badUsers = users.slice(0, 10).map((u) => ({ user: u.user, password: `${u.password}-wrong` }));

describe.skipIf(SKIP_E2E)('e2e: REGISTER with digest (SIPp)', { timeout: 120_000 }, () => {
  let target: Target;
  let port: number; // all registrations come from one SIPp port, so unreg.xml removes exactly those contacts

  beforeAll(async () => {
    target = await startTarget({ users });
    port = await freePort();
  }, 240_000);

  afterAll(async () => {
    await target?.stop();
  });

  it(`registers ${N} users from an injection file (401 then 200)`, async () => {
    const r = await runSipp(target, {
      scenario: 'reg.xml', name: 'reg100', localPort: port, calls: N, rate: 50,
      inf: usersCsv(users, target.domain), keys: { expires: '300' },
    });
    expectSipp('reg x100', r, { exitCode: 0, successful: N, failed: 0 });
  });

  it('rejects a wrong password: reg.xml fails every call', async () => {
    const r = await runSipp(target, {
      scenario: 'reg.xml', name: 'reg-bad', calls: badUsers.length, rate: 10,
      inf: usersCsv(badUsers, target.domain), keys: { expires: '300' },
    });
    expectSipp('reg.xml with wrong passwords', r, { exitCode: 1, successful: 0, failed: badUsers.length });
  });

  it('rejects a wrong password: reg-badpw.xml succeeds only on 401/403', async () => {
    const r = await runSipp(target, {
      scenario: 'reg-badpw.xml', name: 'reg-badpw', calls: badUsers.length, rate: 10,
      inf: usersCsv(badUsers, target.domain),
    });
    expectSipp('reg-badpw.xml', r, { exitCode: 0, successful: badUsers.length, failed: 0 });
  });

  it('registers over TCP', async () => {
    const r = await runSipp(target, {
      scenario: 'reg.xml', name: 'reg-tcp', transport: 't1', calls: tcpUsers.length, rate: 10,
      inf: usersCsv(tcpUsers, target.domain), keys: { expires: '300' },
    });
    expectSipp('reg over TCP', r, { exitCode: 0, successful: tcpUsers.length, failed: 0 });
  });

  it(`un-registers the ${N} users (Expires: 0, authenticated); a call to one of them then gets 404`, async () => {
    const r = await runSipp(target, {
      scenario: 'unreg.xml', name: 'unreg100', localPort: port, calls: N, rate: 50,
      inf: usersCsv(users, target.domain),
    });
    expectSipp('unreg x100', r, { exitCode: 0, successful: N, failed: 0 });

    // users[50..] were registered only over UDP from `port`; now they have no contact.
    const nf = await runSipp(target, {
      scenario: 'uac-404.xml', name: 'after-unreg-404', calls: 1, rate: 10,
      inf: callsCsv([{ from: users[50]!, to: users[51]!.user }], target.domain),
    });
    expectSipp('call to an un-registered user', nf, { exitCode: 0, successful: 1, failed: 0 });
  });
});
