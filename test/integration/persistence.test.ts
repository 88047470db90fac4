/**
 * Issue 8, persistence holes, end to end: a real sipd subprocess (write-back location store) on
 * MariaDB through test/helpers/tcp-proxy.ts, phones registering with digest auth over UDP.
 *
 *   - the database cut for ~3 s while five changes are made (new registrations and
 *     de-registrations): once it heals, the location table holds exactly the live bindings
 *   - a REGISTER whose Call-ID (300 bytes) the location.callid column cannot hold gets 400 and
 *     blocks nothing; DELETE /location/ with an empty AOR gets 400 and blocks nothing
 *   - with the database down, credentials not cached: 503 with Retry-After (not 500)
 *   - SIGTERM while the database is black-holed: sipd exits 0 within its bounds, one log line lists
 *     the unwritten changes; restarted on the healed database it holds exactly what had landed
 *   - db-only mode: REGISTER with the database down gets 503 with Retry-After
 *
 * Every wait is bounded: the database is polled in bounded loops, sipd's log by waitFor().
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initSchema, openStores } from '../../src/store/index.js';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';
import { freePort, SipdProcess, type LogLine } from '../helpers/sipd-process.js';
import { SipPhone } from '../helpers/sip-phone.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const HOST = '127.0.0.1';
const ADMIN_TOKEN = 'persistence-test-admin-token';

/** `user contact cseq` of every row of the location table, sorted. */
async function table(tdb: TestDatabase): Promise<string[]> {
  const rows = await tdb.query('SELECT username, contact, cseq FROM location ORDER BY username, contact');
  return rows.map((r) => `${String(r.username)} ${String(r.contact)} ${Number(r.cseq)}`);
}

/** Poll the location table until it equals `want` (bounded); returns the last state read. */
async function tableBecomes(tdb: TestDatabase, want: string[], timeoutMs = 20_000): Promise<string[]> {
  const sorted = [...want].sort();
  let got: string[] = [];
  for (let waited = 0; waited <= timeoutMs; waited += 100) {
    got = await table(tdb);
    if (JSON.stringify(got) === JSON.stringify(sorted)) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  return got;
}

function row(p: SipPhone, cseq: number): string {
  return `${p.user} ${p.contact} ${cseq}`;
}

async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${HOST}:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

function sample(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
}

describeMysql('persistence through a database outage (sipd + MariaDB behind a breakable proxy)', () => {
  let tdb: TestDatabase;
  let proxy: TcpProxy;
  let dir = '';
  let port = 0;
  let mport = 0;
  let env: Record<string, string> = {};
  let config = '';
  let sipd: SipdProcess | undefined;
  const phones: Record<string, SipPhone> = {};
  const users = ['u1', 'u2', 'u3', 'u4', 'u5', 'u6'];
  const password = (u: string): string => `pw-${u}-secret`;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
    const direct = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } });
    for (const u of users) await direct.subscribers.add(u, HOST, password(u));
    await direct.close();
    proxy = await TcpProxy.start({ host: tdb.db.host, port: tdb.db.port });
    dir = mkdtempSync(join(tmpdir(), 'sipd-persist-'));
    port = await freePort();
    mport = await freePort();
    env = {
      SIPD_DB: `mysql://${encodeURIComponent(tdb.db.user)}${tdb.db.password ? `:${encodeURIComponent(tdb.db.password)}` : ''}@127.0.0.1:${proxy.port}/${tdb.name}`,
      SIPD_LISTEN: `udp:${HOST}:${port}`,
      SIPD_DOMAINS: HOST,
      SIPD_METRICS: `${HOST}:${mport}`,
      SIPD_LOG_LEVEL: 'info',
      SIPD_ADMIN_TOKEN: ADMIN_TOKEN,
      SIPD_STATE_DIR: join(dir, 'state'),
    };
    config = join(dir, 'sipd.yaml');
    writeFileSync(
      config,
      [
        'location:',
        '  db_mode: write-back',
        '  flush_interval_ms: 200',
        '  retry_max_ms: 800',
        '  final_flush_ms: 1500',
        'db_pool:',
        '  query_timeout_ms: 500',
        'auth:',
        // credentials stay cached through the outage, so that the phones can still register
        '  credential_cache_ttl_ms: 600000',
        'shutdown_grace_ms: 500',
        '',
      ].join('\n'),
    );
    for (const name of ['A', 'A2', 'B', 'C', 'D', 'E']) {
      const user = name === 'A2' ? 'u1' : `u${'ABCDE'.indexOf(name) + 1}`;
      phones[name] = await new SipPhone(user, password(user), { port }).open();
    }
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
  }, 60_000);

  afterAll(async () => {
    for (const p of Object.values(phones)) await p.close();
    if (sipd !== undefined && sipd.exit === undefined) await sipd.kill('SIGKILL').catch(() => undefined);
    await proxy?.close();
    await tdb?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const logs = (): LogLine[] => sipd!.logs();
  const logged = (msg: string): LogLine[] => logs().filter((l) => l.msg === msg);

  it('registers four phones; the table gets them', async () => {
    const { A, B, C, D, E } = phones as Record<string, SipPhone>;
    for (const p of [A!, B!, C!, D!]) expect((await p.register({ cseq: 1 })).status).toBe(200);
    // u5 only queries (no Contact): its credentials are now cached too
    expect((await E!.register({ contact: null, cseq: 1 })).status).toBe(200);
    expect(await tableBecomes(tdb, [row(A!, 2), row(B!, 2), row(C!, 2), row(D!, 2)])).toEqual([row(A!, 2), row(B!, 2), row(C!, 2), row(D!, 2)].sort());
  });

  it('database cut for ~3 s during five changes (two new registrations, two de-registrations, a refresh): afterwards the table holds exactly the live bindings', async () => {
    const { A, A2, B, C, D, E } = phones as Record<string, SipPhone>;
    const cutAt = Date.now();
    await proxy.refuse();
    expect((await E!.register({ cseq: 3 })).status).toBe(200); // new: u5 phone E
    expect((await A2!.register({ cseq: 1 })).status).toBe(200); // new: u1's second phone
    expect((await B!.register({ cseq: 3, expires: 0 })).status).toBe(200); // de-registration of B
    expect((await C!.register({ cseq: 3, contact: '*', expires: 0 })).status).toBe(200); // de-registration of all of u3
    expect((await D!.register({ cseq: 3, expires: 1800 })).status).toBe(200); // refresh of D
    // with the database down and the credentials not cached: 503 with Retry-After, not 500
    const stranger = await new SipPhone('u6', password('u6'), { port }).open();
    try {
      const r = await stranger.register({ cseq: 1 });
      expect(r.status).toBe(503);
      expect(r.header('retry-after')).toMatch(/^\d+$/);
    } finally {
      await stranger.close();
    }
    await sipd!.waitFor(() => logged('location database unavailable; changes are kept in memory and retried').length > 0, 10_000, 'the outage to be noticed');
    const left = 3000 - (Date.now() - cutAt);
    if (left > 0) await new Promise((r) => setTimeout(r, left)); // the outage lasts ~3 s
    expect(await table(tdb)).toEqual([row(A!, 2), row(B!, 2), row(C!, 2), row(D!, 2)].sort()); // nothing could be written
    await proxy.heal();
    const live = [row(A!, 2), row(A2!, 2), row(D!, 4), row(E!, 4)];
    expect(await tableBecomes(tdb, live)).toEqual(live.sort());
    await sipd!.waitFor(() => logged('location database available again').length > 0, 10_000, 'the recovery line');
    expect(logged('location change dropped: the database refused it')).toEqual([]);
    const m = (await httpGet(mport, '/metrics')).body;
    expect(sample(m, 'sipd_location_write_backlog')).toBe(0);
    expect(sample(m, 'sipd_location_write_failures_total', '{kind="transient"}')).toBeGreaterThan(0);
    expect(sample(m, 'sipd_registered_contacts')).toBe(4);
  }, 60_000);

  it('a REGISTER with a 300-byte Call-ID gets 400 naming it; DELETE /location/ with an empty AOR gets 400; later writes still land', async () => {
    const { A, A2, B, D, E } = phones as Record<string, SipPhone>;
    const poison = await B!.register({ callId: 'x'.repeat(300), cseq: 1 });
    expect(poison.status).toBe(400);
    expect(poison.reason).toBe('Bad Request (Call-ID too long)');
    const del = await fetch(`http://${HOST}:${mport}/location/`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: AbortSignal.timeout(10_000) });
    expect(del.status).toBe(400);
    await del.text();
    expect((await B!.register({ cseq: 5 })).status).toBe(200);
    const live = [row(A!, 2), row(A2!, 2), row(B!, 6), row(D!, 4), row(E!, 4)];
    expect(await tableBecomes(tdb, live)).toEqual(live.sort());
    const m = (await httpGet(mport, '/metrics')).body;
    expect(sample(m, 'sipd_location_write_failures_total', '{kind="permanent"}')).toBe(0); // refused before it was queued
  }, 60_000);

  it('SIGTERM while the database is black-holed: exit 0, one line lists the unwritten changes; a restart on the healed database holds what had landed', async () => {
    const { A, A2, B, C, D, E } = phones as Record<string, SipPhone>;
    const landed = [row(A!, 2), row(A2!, 2), row(B!, 6), row(D!, 4), row(E!, 4)];
    await proxy.blackhole();
    expect((await C!.register({ cseq: 5 })).status).toBe(200); // u3 back: never reaches the table
    expect((await A2!.register({ cseq: 3, expires: 0 })).status).toBe(200); // u1's second phone gone: never reaches the table
    await sipd!.waitFor(() => logged('location database unavailable; changes are kept in memory and retried').length > 1, 10_000, 'the stall to be noticed');
    const exit = await sipd!.kill('SIGTERM', 60_000); // fails the test (and SIGKILLs) if sipd does not exit
    expect(exit).toEqual({ code: 0, signal: null });
    const lost = logged('location changes not written to the database before shutdown (lost)');
    expect(lost).toHaveLength(1);
    expect(lost[0]!.level).toBe(50);
    expect(lost[0]!.unwritten).toBe(2);
    expect([...(lost[0]!.aors as string[])].sort()).toEqual([A2!.aor, C!.aor].sort());
    expect(logged('stopped')).toHaveLength(1);

    await proxy.heal();
    expect(await table(tdb)).toEqual(landed.sort());
    sipd = await SipdProcess.start({ env, args: ['--config', config] });
    expect(sample((await httpGet(mport, '/metrics')).body, 'sipd_registered_contacts')).toBe(landed.length);
    // memory agrees: u1 still has both phones, u3 none
    const q1 = await A!.register({ contact: null, cseq: 10 });
    expect(q1.contacts().map((c) => (c as { uri: { raw: string } }).uri.raw).sort()).toEqual([A!.contact, A2!.contact].sort());
    const q3 = await C!.register({ contact: null, cseq: 10 });
    expect(q3.status).toBe(200);
    expect(q3.contacts()).toEqual([]);
    const exit2 = await sipd.kill('SIGTERM', 60_000);
    expect(exit2).toEqual({ code: 0, signal: null });
    expect(logged('location changes not written to the database before shutdown (lost)')).toEqual([]);
    expect(await table(tdb)).toEqual(landed.sort());
  }, 90_000);
});

describeMysql('db-only registrar with the database down', () => {
  let tdb: TestDatabase;
  let proxy: TcpProxy;
  let dir = '';
  let sipd: SipdProcess | undefined;
  let phone: SipPhone | undefined;

  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
    const direct = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } });
    await direct.subscribers.add('u1', HOST, 'pw-u1');
    await direct.close();
    proxy = await TcpProxy.start({ host: tdb.db.host, port: tdb.db.port });
    dir = mkdtempSync(join(tmpdir(), 'sipd-dbonly-'));
    const config = join(dir, 'sipd.yaml');
    writeFileSync(config, ['location:', '  db_mode: db-only', 'db_pool:', '  query_timeout_ms: 500', 'auth:', '  credential_cache_ttl_ms: 600000', ''].join('\n'));
    const port = await freePort();
    sipd = await SipdProcess.start({
      env: { SIPD_DB: `mysql://root@127.0.0.1:${proxy.port}/${tdb.name}`, SIPD_LISTEN: `udp:${HOST}:${port}`, SIPD_DOMAINS: HOST, SIPD_METRICS: 'off', SIPD_LOG_LEVEL: 'info' },
      args: ['--config', config],
    });
    phone = await new SipPhone('u1', 'pw-u1', { port }).open();
  }, 60_000);

  afterAll(async () => {
    await phone?.close();
    if (sipd !== undefined && sipd.exit === undefined) await sipd.kill('SIGKILL').catch(() => undefined);
    await proxy?.close();
    await tdb?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  let cseq = 1;
  const next = (): number => {
    cseq += 2;
    return cseq - 2;
  };

  for (const how of ['refused', 'black-holed'] as const) {
    it(`REGISTER with the database ${how}: 503 with Retry-After; once it is back, 200 and the binding in the table`, async () => {
      await tdb.query('DELETE FROM location');
      if (how === 'refused') await proxy.refuse();
      else await proxy.blackhole();
      const r = await phone!.register({ cseq: next() });
      expect(r.status).toBe(503);
      expect(r.header('retry-after')).toMatch(/^\d+$/);
      await proxy.heal();
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        status = (await phone!.register({ cseq: next() })).status;
        if (status !== 200) await new Promise((res) => setTimeout(res, 100));
      }
      expect(status).toBe(200);
      expect((await tdb.query('SELECT contact FROM location')).map((x) => x.contact)).toEqual([phone!.contact]);
    }, 60_000);
  }
});
