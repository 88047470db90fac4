/**
 * Store behaviour, the same cases against memory, SQLite (temp file) and
 * MySQL (fresh MariaDB database), plus db_mode write-through / db-only.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DbMode, DbUrl } from '../../src/config.js';
import {
  type Binding,
  type LocationStore,
  MemoryLocationStore,
  MemorySubscriberStore,
  type Stores,
  StoreError,
  type SubscriberStore,
  initSchema,
  openStores,
} from '../../src/store/index.js';
import { createTestDatabase, describeMysql, type TestDatabase } from '../helpers/mysql.js';

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const T0 = 1_700_000_000_000; // whole seconds: SQL stores keep second precision

function binding(over: Partial<Binding> & { contact: string }, aor = 'alice@example.com'): Binding {
  const [username, domain] = aor.split('@') as [string, string];
  return {
    aor,
    username,
    domain,
    expires: T0 + 3600_000,
    q: null,
    callId: 'call-1@host',
    cseq: 1,
    ruid: `ruid-${aor}-${over.contact}`,
    lastModified: T0,
    flags: 0,
    cflags: 0,
    ...over,
  };
}

interface Opened {
  subscribers: SubscriberStore;
  locations: LocationStore;
  close(): Promise<void>;
}

interface Backend {
  name: string;
  mysql: boolean;
  beforeAll(): Promise<void>;
  afterAll(): Promise<void>;
  /** Fresh, empty stores for one test. */
  open(now: () => number): Promise<Opened>;
  /** The database behind open() (null for memory). */
  db(): DbUrl | null;
}

function memoryBackend(): Backend {
  return {
    name: 'memory',
    mysql: false,
    async beforeAll() {},
    async afterAll() {},
    async open(now) {
      const subscribers = new MemorySubscriberStore();
      const locations = new MemoryLocationStore(now);
      return { subscribers, locations, close: async () => (await subscribers.close(), await locations.close()) };
    },
    db: () => null,
  };
}

function sqliteBackend(): Backend {
  let dir = '';
  let n = 0;
  let current: DbUrl | null = null;
  return {
    name: 'sqlite',
    mysql: false,
    async beforeAll() {
      dir = mkdtempSync(join(tmpdir(), 'sipd-store-'));
    },
    async afterAll() {
      rmSync(dir, { recursive: true, force: true });
    },
    async open(now) {
      current = { kind: 'sqlite', path: join(dir, `t${++n}.sqlite`) };
      return openStores({ db: current, location: { db_mode: 'db-only' } }, { now });
    },
    db: () => current,
  };
}

function mysqlBackend(): Backend {
  let tdb: TestDatabase | null = null;
  return {
    name: 'mysql',
    mysql: true,
    async beforeAll() {
      tdb = await createTestDatabase();
      await initSchema(tdb.db);
    },
    async afterAll() {
      await tdb?.drop();
    },
    async open(now) {
      await tdb!.query('DELETE FROM subscriber');
      await tdb!.query('DELETE FROM location');
      return openStores({ db: tdb!.db, location: { db_mode: 'db-only' } }, { now });
    },
    db: () => tdb!.db,
  };
}

for (const backend of [memoryBackend(), sqliteBackend(), mysqlBackend()]) {
  (backend.mysql ? describeMysql : describe)(`stores: ${backend.name}`, () => {
    let t = T0;
    const now = (): number => t;
    let s: Opened;

    beforeAll(() => backend.beforeAll());
    afterAll(() => backend.afterAll());
    beforeEach(async () => {
      t = T0;
      s = await backend.open(now);
    });
    afterEach(() => s.close());

    describe('SubscriberStore', () => {
      it('add + get returns kamctl-compatible ha1/ha1b', async () => {
        await s.subscribers.add('alice', 'example.com', 's3cret');
        expect(await s.subscribers.get('alice', 'example.com')).toEqual({
          username: 'alice',
          domain: 'example.com',
          password: 's3cret',
          ha1: md5('alice:example.com:s3cret'),
          ha1b: md5('alice@example.com:example.com:s3cret'),
        });
      });

      it('get of an unknown user is null; lookups are per domain', async () => {
        await s.subscribers.add('alice', 'example.com', 'pw');
        expect(await s.subscribers.get('bob', 'example.com')).toBeNull();
        expect(await s.subscribers.get('alice', 'other.org')).toBeNull();
      });

      it('add of an existing user throws StoreError EXISTS', async () => {
        await s.subscribers.add('alice', 'example.com', 'pw');
        const err = await s.subscribers.add('alice', 'example.com', 'other').catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StoreError);
        expect((err as StoreError).code).toBe('EXISTS');
        expect((await s.subscribers.get('alice', 'example.com'))?.password).toBe('pw');
      });

      it('add with an empty password throws INVALID', async () => {
        await expect(s.subscribers.add('alice', 'example.com', '')).rejects.toMatchObject({ code: 'INVALID' });
      });

      it('setPassword recomputes ha1/ha1b; unknown user gives false', async () => {
        await s.subscribers.add('alice', 'example.com', 'old');
        expect(await s.subscribers.setPassword('alice', 'example.com', 'new')).toBe(true);
        const sub = await s.subscribers.get('alice', 'example.com');
        expect(sub?.password).toBe('new');
        expect(sub?.ha1).toBe(md5('alice:example.com:new'));
        expect(sub?.ha1b).toBe(md5('alice@example.com:example.com:new'));
        expect(await s.subscribers.setPassword('nobody', 'example.com', 'x')).toBe(false);
      });

      it('remove returns true once, then false', async () => {
        await s.subscribers.add('alice', 'example.com', 'pw');
        expect(await s.subscribers.remove('alice', 'example.com')).toBe(true);
        expect(await s.subscribers.remove('alice', 'example.com')).toBe(false);
        expect(await s.subscribers.get('alice', 'example.com')).toBeNull();
      });

      it('stores quotes and SQL metacharacters literally', async () => {
        const pw = "x'); DROP TABLE subscriber; -- \\ \"";
        await s.subscribers.add("o'brien", 'example.com', pw);
        expect(await s.subscribers.get("o'brien", 'example.com')).toMatchObject({ password: pw, ha1: md5(`o'brien:example.com:${pw}`) });
        expect(await s.subscribers.list()).toHaveLength(1);
      });

      it('list is ordered by domain then username and filters by domain', async () => {
        await s.subscribers.add('carol', 'b.org', 'pw');
        await s.subscribers.add('bob', 'a.org', 'pw');
        await s.subscribers.add('alice', 'b.org', 'pw');
        expect((await s.subscribers.list()).map((x) => `${x.username}@${x.domain}`)).toEqual(['bob@a.org', 'alice@b.org', 'carol@b.org']);
        expect((await s.subscribers.list('b.org')).map((x) => x.username)).toEqual(['alice', 'carol']);
        expect(await s.subscribers.list('none.org')).toEqual([]);
      });
      it('getMany answers in key order exactly as get() does for each key (collation included), over many keys', async () => {
        await s.subscribers.add('alice', 'example.com', 'pw1');
        await s.subscribers.add('bob', 'example.com', 'pw2');
        expect(s.subscribers.getMany).toBeDefined();
        const keys = [
          { username: 'bob', domain: 'example.com' },
          { username: 'nobody', domain: 'example.com' },
          { username: 'alice', domain: 'example.com' },
          { username: 'ALICE', domain: 'Example.COM' },
          { username: 'alice ', domain: 'example.com' },
          { username: 'alice', domain: 'example.org' },
          { username: "a' OR '1'='1", domain: 'example.com' },
          { username: 'bob', domain: 'example.com' },
        ];
        const one = await Promise.all(keys.map((k) => s.subscribers.get(k.username, k.domain)));
        expect(await s.subscribers.getMany!(keys)).toEqual(one);
        expect(one[0]?.password).toBe('pw2');
        expect(one[1]).toBeNull();
        expect(one[2]?.password).toBe('pw1');
        expect(await s.subscribers.getMany!([])).toEqual([]);
        // more keys than one statement takes
        const many = Array.from({ length: 450 }, (_, i) => ({ username: i % 3 === 0 ? 'alice' : `u${i}`, domain: 'example.com' }));
        const got = await s.subscribers.getMany!(many);
        expect(got).toHaveLength(450);
        got.forEach((g, i) => expect(g?.username ?? null, String(i)).toBe(i % 3 === 0 ? 'alice' : null));
      });
    });

    describe('LocationStore', () => {
      it('round-trips every field; the contact is kept byte for byte', async () => {
        const b = binding({
          contact: 'sip:alice@192.0.2.10:5062;transport=tcp;ob?X-Foo=a%20b',
          received: 'sip:198.51.100.7:40000;transport=tcp',
          path: ['<sip:edge1.example.com;lr>', '<sip:edge2.example.com;lr;x="a,b">'],
          q: 0.5,
          callId: 'abc@def',
          cseq: 42,
          userAgent: 'Softphone/1.0',
          socket: 'tcp:127.0.0.1:5060',
          instance: '<urn:uuid:00000000-0000-1000-8000-000A95A0E128>',
          regId: 1,
          ruid: 'uloc-1',
          flags: 2,
          cflags: 64,
          methods: 8191,
        });
        await s.locations.save(b);
        expect(await s.locations.lookup('alice@example.com')).toEqual([b]);
      });

      it('lookup of an unknown AOR is empty; a malformed AOR is INVALID', async () => {
        expect(await s.locations.lookup('nobody@example.com')).toEqual([]);
        await expect(s.locations.lookup('no-at-sign')).rejects.toMatchObject({ code: 'INVALID' });
      });

      it('save with the same aor+contact replaces the binding', async () => {
        await s.locations.save(binding({ contact: 'sip:alice@192.0.2.1', cseq: 1 }));
        await s.locations.save(binding({ contact: 'sip:alice@192.0.2.1', cseq: 2, expires: T0 + 60_000, lastModified: T0 + 5000 }));
        const got = await s.locations.lookup('alice@example.com');
        expect(got).toHaveLength(1);
        expect(got[0]).toMatchObject({ cseq: 2, expires: T0 + 60_000, lastModified: T0 + 5000 });
        expect(await s.locations.counts()).toEqual({ aors: 1, contacts: 1 });
      });

      it('saveMany writes bindings in order; a save is keyed on the ruid: the same ruid under a new contact moves the row', async () => {
        if (s.locations.saveMany === undefined) return; // memory: no batched form
        const a = binding({ contact: 'sip:alice@192.0.2.1', ruid: 'R1' });
        const b2 = binding({ contact: 'sip:alice@192.0.2.2', ruid: 'R2', q: 0.5 });
        const c = binding({ contact: 'sip:carol@192.0.2.3', ruid: 'R3' }, 'carol@example.com');
        await s.locations.saveMany([a, b2, c, { ...a, cseq: 7 }]);
        expect(await s.locations.lookup('alice@example.com')).toEqual([{ ...a, cseq: 7 }, b2]);
        expect(await s.locations.counts()).toEqual({ aors: 2, contacts: 3 });
        // RFC 5626: the flow of R1 moves to a new contact
        const moved = { ...a, contact: 'sip:alice@198.51.100.9', cseq: 8 };
        await s.locations.save(moved);
        expect(await s.locations.lookup('alice@example.com')).toEqual([moved, b2]);
        // a statement with a refused row writes nothing of it
        const bad = binding({ contact: `sip:${'x'.repeat(600)}`, ruid: 'R4' });
        const fresh = binding({ contact: 'sip:alice@192.0.2.5', ruid: 'R5' });
        await expect(s.locations.saveMany([fresh, bad])).rejects.toMatchObject({ code: 'INVALID' });
        expect(await s.locations.counts()).toEqual({ aors: 2, contacts: 3 });
        await s.locations.saveMany([]);
      });

      it('orders by q descending (no q ranks as 1.0), then newest first', async () => {
        await s.locations.save(binding({ contact: 'sip:a@h1', q: 0.1 }));
        await s.locations.save(binding({ contact: 'sip:a@h2', q: 0.9, lastModified: T0 }));
        await s.locations.save(binding({ contact: 'sip:a@h3', q: 0.9, lastModified: T0 + 2000 }));
        await s.locations.save(binding({ contact: 'sip:a@h4', q: null }));
        expect((await s.locations.lookup('alice@example.com')).map((b) => b.contact)).toEqual([
          'sip:a@h4',
          'sip:a@h3',
          'sip:a@h2',
          'sip:a@h1',
        ]);
      });

      it('hides expired bindings according to the injected clock', async () => {
        await s.locations.save(binding({ contact: 'sip:a@short', expires: T0 + 60_000 }));
        await s.locations.save(binding({ contact: 'sip:a@long', expires: T0 + 3600_000 }));
        expect(await s.locations.lookup('alice@example.com')).toHaveLength(2);
        t = T0 + 60_000; // expires == now counts as expired
        expect((await s.locations.lookup('alice@example.com')).map((b) => b.contact)).toEqual(['sip:a@long']);
        t = T0 + 3600_000;
        expect(await s.locations.lookup('alice@example.com')).toEqual([]);
        expect(await s.locations.counts()).toEqual({ aors: 0, contacts: 0 });
      });

      it('expire(now) deletes only expired bindings and returns the count', async () => {
        await s.locations.save(binding({ contact: 'sip:a@1', expires: T0 + 10_000 }));
        await s.locations.save(binding({ contact: 'sip:a@2', expires: T0 + 20_000 }));
        await s.locations.save(binding({ contact: 'sip:b@1', expires: T0 + 30_000 }, 'bob@example.com'));
        expect(await s.locations.expire(T0 + 5_000)).toBe(0);
        expect(await s.locations.expire(T0 + 20_000)).toBe(2);
        expect(await s.locations.expire(T0 + 20_000)).toBe(0);
        expect((await s.locations.list()).map((b) => b.contact)).toEqual(['sip:b@1']);
      });

      it('remove and removeAll report what they removed', async () => {
        await s.locations.save(binding({ contact: 'sip:a@1' }));
        await s.locations.save(binding({ contact: 'sip:a@2' }));
        await s.locations.save(binding({ contact: 'sip:a@3' }));
        expect(await s.locations.remove('alice@example.com', 'sip:a@1')).toBe(true);
        expect(await s.locations.remove('alice@example.com', 'sip:a@1')).toBe(false);
        expect(await s.locations.removeAll('alice@example.com')).toBe(2);
        expect(await s.locations.removeAll('alice@example.com')).toBe(0);
        expect(await s.locations.lookup('alice@example.com')).toEqual([]);
      });

      it('list, aors and counts cover all unexpired bindings, ordered by aor', async () => {
        await s.locations.save(binding({ contact: 'sip:c@1' }, 'carol@example.com'));
        await s.locations.save(binding({ contact: 'sip:a@1', q: 0.2 }));
        await s.locations.save(binding({ contact: 'sip:a@2', q: 0.8 }));
        await s.locations.save(binding({ contact: 'sip:b@1', expires: T0 + 1000 }, 'bob@example.com'));
        t = T0 + 1000; // bob has expired
        expect((await s.locations.list()).map((b) => `${b.aor} ${b.contact}`)).toEqual([
          'alice@example.com sip:a@2',
          'alice@example.com sip:a@1',
          'carol@example.com sip:c@1',
        ]);
        expect(await s.locations.aors()).toEqual(['alice@example.com', 'carol@example.com']);
        expect(await s.locations.counts()).toEqual({ aors: 2, contacts: 3 });
      });

      it('rejects a binding whose aor does not match username/domain', async () => {
        const b = { ...binding({ contact: 'sip:x@y' }), username: 'mallory' };
        await expect(s.locations.save(b)).rejects.toMatchObject({ code: 'INVALID' });
      });

      it('every field at its column size round-trips; one character more is INVALID and nothing is written', async () => {
        const user = 'u'.repeat(64);
        const domain = 'd'.repeat(64);
        const aor = `${user}@${domain}`;
        const full = binding(
          {
            contact: `sip:${'c'.repeat(508)}`,
            callId: 'i'.repeat(255),
            userAgent: 'a'.repeat(255),
            path: ['<sip:p.example.com;lr>', `<sip:${'p'.repeat(512 - 22 - 1 - 9)};lr>`],
            received: `sip:${'r'.repeat(124)}`,
            instance: 'n'.repeat(255),
            socket: 's'.repeat(64),
            ruid: 'x'.repeat(64),
            cseq: 2 ** 31 - 1,
            regId: 2 ** 31 - 1,
          },
          aor,
        );
        expect(full.path!.join(',').length).toBe(512);
        await s.locations.save(full);
        expect(await s.locations.lookup(aor)).toEqual([full]);

        const over: Array<[string, Partial<Binding>]> = [
          ['contact', { contact: `${full.contact}c` }],
          ['callid', { callId: `${full.callId}i` }],
          ['user_agent', { userAgent: `${full.userAgent!}a` }],
          ['path', { path: [...full.path!.slice(0, 1), full.path![1]!.replace(';lr>', ';lr;>')] }],
          ['received', { received: `${full.received!}r` }],
          ['instance', { instance: `${full.instance!}n` }],
          ['socket', { socket: `${full.socket!}s` }],
          ['ruid', { ruid: `${full.ruid}x` }],
          ['cseq', { cseq: 2 ** 31 }],
          ['reg_id', { regId: 2 ** 31 }],
        ];
        for (const [column, change] of over) {
          const b = { ...full, contact: 'contact' in change ? change.contact! : 'sip:other@h', ...change, ruid: change.ruid ?? `r-${column}` };
          const err = await s.locations.save(b).catch((e: unknown) => e);
          expect(err, column).toBeInstanceOf(StoreError);
          expect(err, column).toMatchObject({ code: 'INVALID', message: expect.stringContaining(`location.${column} `) });
        }
        const longUser = binding({ contact: 'sip:x@h' }, `${user}u@example.com`);
        await expect(s.locations.save(longUser)).rejects.toMatchObject({ code: 'INVALID', message: expect.stringContaining('location.username') });
        const longDomain = binding({ contact: 'sip:x@h' }, `alice@${domain}d`);
        await expect(s.locations.save(longDomain)).rejects.toMatchObject({ code: 'INVALID', message: expect.stringContaining('location.domain') });
        expect((await s.locations.list()).map((b) => b.contact)).toEqual([full.contact]);
      });

      it('removeAll and remove of an empty or malformed AOR are INVALID', async () => {
        await s.locations.save(binding({ contact: 'sip:a@1' }));
        await expect(s.locations.removeAll('')).rejects.toMatchObject({ code: 'INVALID' });
        await expect(s.locations.removeAll('alice@')).rejects.toMatchObject({ code: 'INVALID' });
        await expect(s.locations.remove('', 'sip:a@1')).rejects.toMatchObject({ code: 'INVALID' });
        expect(await s.locations.counts()).toEqual({ aors: 1, contacts: 1 });
      });
    });

    if (backend.name !== 'memory') {
      describe('db_mode', () => {
        const open = (mode: DbMode, clock = now): Promise<Stores> =>
          openStores({ db: backend.db()!, location: { db_mode: mode } }, { now: clock });

        it('write-through writes to the db and reloads unexpired bindings after a restart', async () => {
          const a = await open('write-through');
          await a.locations.save(binding({ contact: 'sip:a@kept', expires: T0 + 3600_000 }));
          await a.locations.save(binding({ contact: 'sip:a@gone', expires: T0 + 10_000 }));
          // Another reader of the same table sees the write immediately.
          const reader = await open('db-only');
          expect((await reader.locations.lookup('alice@example.com')).map((b) => b.contact)).toEqual(['sip:a@gone', 'sip:a@kept']);
          await reader.close();
          await a.close();

          t = T0 + 20_000; // "restart" later: the short binding has expired meanwhile
          const b = await open('write-through');
          expect(await b.locations.counts()).toEqual({ aors: 1, contacts: 1 });
          expect((await b.locations.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@kept']);
          // removeAll also deletes the expired row still in the table (not purged yet).
          expect(await b.locations.removeAll('alice@example.com')).toBe(2);
          await b.close();

          const c = await open('write-through');
          expect(await c.locations.counts()).toEqual({ aors: 0, contacts: 0 });
          await c.close();
        });

        it('write-through expire() purges memory and db', async () => {
          const a = await open('write-through');
          await a.locations.save(binding({ contact: 'sip:a@1', expires: T0 + 10_000 }));
          expect(await a.locations.expire(T0 + 10_000)).toBe(1);
          await a.close();
          const b = await open('db-only', () => T0);
          expect(await b.locations.lookup('alice@example.com')).toEqual([]);
          await b.close();
        });

        it('db-only: two instances share one table', async () => {
          const a = await open('db-only');
          const b = await open('db-only');
          await a.locations.save(binding({ contact: 'sip:a@from-a' }));
          await b.locations.save(binding({ contact: 'sip:a@from-b', q: 0.1 }));
          expect((await b.locations.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@from-a', 'sip:a@from-b']);
          expect(await a.locations.remove('alice@example.com', 'sip:a@from-b')).toBe(true);
          expect((await b.locations.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@from-a']);
          await a.close();
          await b.close();
        });

        it('memory mode keeps bindings out of the db', async () => {
          const a = await open('memory');
          await a.locations.save(binding({ contact: 'sip:a@mem' }));
          expect(await a.locations.lookup('alice@example.com')).toHaveLength(1);
          const reader = await open('db-only');
          expect(await reader.locations.lookup('alice@example.com')).toEqual([]);
          await reader.close();
          await a.close();
        });
      });
    }
  });
}

describeMysql('MySQL location table without a unique ruid (hand-made schema)', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
    await tdb.query('ALTER TABLE location DROP INDEX ruid_idx');
  });
  afterAll(() => tdb.drop());

  it('saves fall back to UPDATE by aor + contact, then INSERT: still one row per contact', async () => {
    const s = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } }, { now: () => T0 });
    try {
      const a = binding({ contact: 'sip:alice@192.0.2.1', ruid: 'R1' });
      await s.locations.save(a);
      await s.locations.saveMany!([{ ...a, cseq: 2 }, binding({ contact: 'sip:alice@192.0.2.2', ruid: 'R2' })]);
      await s.locations.save({ ...a, cseq: 3, ruid: 'R9' });
      const rows = await tdb.query('SELECT contact, cseq, ruid FROM location ORDER BY contact');
      expect(rows.map((r) => [r.contact, Number(r.cseq), r.ruid])).toEqual([
        ['sip:alice@192.0.2.1', 3, 'R9'],
        ['sip:alice@192.0.2.2', 1, 'R2'],
      ]);
    } finally {
      await s.close();
    }
  });
});

describeMysql('MySQL location upsert on the Kamailio schema', () => {
  let tdb: TestDatabase;
  beforeAll(async () => {
    tdb = await createTestDatabase();
    await initSchema(tdb.db);
  });
  afterAll(() => tdb.drop());

  it('a save updates the row of its ruid in place (same id) and leaves the Kamailio-only columns alone', async () => {
    const s = await openStores({ db: tdb.db, location: { db_mode: 'db-only' } }, { now: () => T0 });
    try {
      const a = binding({ contact: 'sip:alice@192.0.2.1', ruid: 'uloc-5f0c-1' });
      await s.locations.save(a);
      await tdb.query('UPDATE location SET server_id = 3, keepalive = 1 WHERE ruid = ?', ['uloc-5f0c-1']);
      const [before] = await tdb.query('SELECT id FROM location WHERE ruid = ?', ['uloc-5f0c-1']);
      await s.locations.saveMany!([{ ...a, cseq: 2 }, { ...a, cseq: 3, expires: T0 + 7200_000 }]);
      const rows = await tdb.query('SELECT id, cseq, server_id, keepalive FROM location');
      expect(rows.map((r) => [Number(r.id), Number(r.cseq), Number(r.server_id), Number(r.keepalive)])).toEqual([[Number(before!.id), 3, 3, 1]]);
      expect(await s.locations.lookup('alice@example.com')).toEqual([{ ...a, cseq: 3, expires: T0 + 7200_000 }]);
    } finally {
      await s.close();
    }
  });
});
