/**
 * usrloc db_mode 2 (write-back): memory answers at once, the database catches up on flush,
 * pending changes keep their order (last change per binding wins), close() flushes, failures retry.
 *
 * Failure handling (issue 8): every pending change is written or retried on its own. A change the
 * database refuses for good (StoreError INVALID) is dropped and reported once; one the database
 * cannot take now (UNREACHABLE, BUSY) is retried with a bounded backoff until written or superseded;
 * a change that can never be written is refused before it is queued; close() is bounded.
 */
import { describe, expect, it } from 'vitest';
import {
  MemoryLocationStore,
  StoreError,
  WriteBackLocationStore,
  type Binding,
  type LocationStore,
  type PendingChange,
  type WriteBackEvents,
  type WriteBackOptions,
} from '../../src/store/index.js';

const T0 = 1_700_000_000_000;
const now = (): number => T0;

function b(contact: string, aor = 'alice@example.com', cseq = 1, extra: Partial<Binding> = {}): Binding {
  const [username, domain] = aor.split('@') as [string, string];
  return { aor, username, domain, contact, expires: T0 + 3600_000, q: null, callId: 'c1', cseq, ruid: `r-${contact}-${aor}`, lastModified: T0, flags: 0, cflags: 0, ...extra };
}

type Verdict = Error | 'hang' | undefined;
type OpName = 'save' | 'remove' | 'removeAll';

/**
 * A database stand-in: records the operations applied to it; `fail` decides per operation whether it
 * throws (an Error), never answers ('hang') or succeeds (undefined).
 */
class FakeDb extends MemoryLocationStore {
  ops: string[] = [];
  attempts: string[] = [];
  fail: (op: OpName, aor: string, contact: string | undefined) => Verdict = () => undefined;
  constructor(clock: () => number = now) {
    super(clock);
  }
  /** every operation now fails with UNREACHABLE (true) or succeeds again (false). */
  set down(v: boolean) {
    this.fail = v ? () => new StoreError('UNREACHABLE', 'cannot reach MySQL: ECONNREFUSED') : () => undefined;
  }
  private async gate(op: OpName, aor: string, contact?: string): Promise<void> {
    this.attempts.push(`${op} ${contact ?? aor}`);
    const v = this.fail(op, aor, contact);
    if (v === 'hang') await new Promise<never>(() => undefined);
    if (v !== undefined) throw v;
  }
  override async save(x: Binding): Promise<void> {
    await this.gate('save', x.aor, x.contact);
    // the location table's UNIQUE ruid_idx
    for (const o of await this.list()) {
      if (o.ruid === x.ruid && !(o.aor === x.aor && o.contact === x.contact)) throw new StoreError('INVALID', `Duplicate entry '${x.ruid}' for key 'ruid_idx'`);
    }
    this.ops.push(`save ${x.contact} ${x.cseq}`);
    return super.save(x);
  }
  override async remove(aor: string, contact: string): Promise<boolean> {
    await this.gate('remove', aor, contact);
    this.ops.push(`remove ${contact}`);
    return super.remove(aor, contact);
  }
  override async removeAll(aor: string): Promise<number> {
    await this.gate('removeAll', aor);
    this.ops.push(`removeAll ${aor}`);
    return super.removeAll(aor);
  }
  /** a database outlives the store using it (MemoryLocationStore.close() would clear it). */
  override async close(): Promise<void> {}
  async contacts(): Promise<string[]> {
    return (await this.list()).map((x) => `${x.aor} ${x.contact} ${x.cseq}`).sort();
  }
}

/** Everything the store reported, in order. */
interface Reports {
  unavailable: unknown[];
  recovered: number[];
  retrying: PendingChange[];
  dropped: PendingChange[];
  failures: string[];
  unwritten: PendingChange[][];
}

function reports(): { r: Reports; events: WriteBackEvents } {
  const r: Reports = { unavailable: [], recovered: [], retrying: [], dropped: [], failures: [], unwritten: [] };
  return {
    r,
    events: {
      unavailable: (e) => r.unavailable.push(e),
      recovered: (n) => r.recovered.push(n),
      retrying: (c) => r.retrying.push(c),
      dropped: (c) => r.dropped.push(c),
      failure: (k) => r.failures.push(k),
      unwritten: (cs) => r.unwritten.push(cs),
    },
  };
}

async function open(db: LocationStore, o: Partial<WriteBackOptions> = {}, clock: () => number = now): Promise<WriteBackLocationStore> {
  return WriteBackLocationStore.open(db, clock, { flushIntervalMs: 3_600_000, flushThreshold: 1000, retryMaxMs: 3_600_000 * 8, finalFlushMs: 2000, ...o });
}

async function memContacts(s: LocationStore): Promise<string[]> {
  return (await s.list()).map((x) => `${x.aor} ${x.contact} ${x.cseq}`).sort();
}

describe('write-back location store', () => {
  it('answers lookups from memory before the database has the binding, and writes it on flush', async () => {
    const db = new FakeDb();
    const s = await open(db);
    await s.save(b('sip:a@1.2.3.4'));
    expect((await s.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@1.2.3.4']);
    expect(await db.lookup('alice@example.com')).toEqual([]);
    expect(s.backlog).toBe(1);
    await s.flush();
    expect((await db.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@1.2.3.4']);
    expect(s.backlog).toBe(0);
    await s.close();
  });

  it('lookupNow answers what lookup answers, at once, and throws what lookup rejects with', async () => {
    const s = await open(new FakeDb());
    await s.save(b('sip:a@1.2.3.4'));
    await s.save(b('sip:b@1.2.3.4', 'alice@example.com', 1, { q: 0.5 }));
    expect(s.lookupNow('alice@example.com')).toEqual(await s.lookup('alice@example.com'));
    expect(s.lookupNow('bob@example.com')).toEqual([]);
    await expect(s.lookup('no-at-sign')).rejects.toBeInstanceOf(StoreError);
    expect(() => s.lookupNow('no-at-sign')).toThrow(StoreError);
    await s.close();
  });

  it('a later save replaces what lookupNow answered (it is not edited), and lookup() answers copies of its own', async () => {
    const s = await open(new FakeDb());
    await s.save(b('sip:a@1.2.3.4', 'alice@example.com', 1));
    const held = s.lookupNow('alice@example.com');
    const copy = (await s.lookup('alice@example.com'))[0]!;
    copy.cseq = 99;
    s.saveNow(b('sip:a@1.2.3.4', 'alice@example.com', 2));
    expect(held[0]!.cseq).toBe(1);
    expect(s.lookupNow('alice@example.com')[0]!.cseq).toBe(2);
    expect(s.removeNow('alice@example.com', 'sip:a@1.2.3.4')).toBe(true);
    expect(s.lookupNow('alice@example.com')).toEqual([]);
    expect(held[0]!.cseq).toBe(1);
    await s.close();
  });

  it('coalesces repeated changes of one binding: only the last is written', async () => {
    const db = new FakeDb();
    const s = await open(db);
    for (let cseq = 1; cseq <= 5; cseq++) await s.save(b('sip:a@1.2.3.4', 'alice@example.com', cseq));
    await s.flush();
    expect(db.ops).toEqual(['save sip:a@1.2.3.4 5']);
    await s.close();
  });

  it('keeps the order of changes: save, remove-all, save again leaves the last binding in the database', async () => {
    const db = new FakeDb();
    const s = await open(db);
    await s.save(b('sip:a@1.2.3.4'));
    await s.save(b('sip:b@1.2.3.4'));
    await s.removeAll('alice@example.com');
    await s.save(b('sip:a@1.2.3.4', 'alice@example.com', 2));
    await s.flush();
    expect(db.ops).toEqual(['removeAll alice@example.com', 'save sip:a@1.2.3.4 2']);
    expect((await db.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:a@1.2.3.4']);
    await s.close();
  });

  it('a removal after a save reaches the database as a removal', async () => {
    const db = new FakeDb();
    await db.save(b('sip:old@1.2.3.4'));
    db.ops = [];
    const s = await open(db);
    expect((await s.lookup('alice@example.com')).length).toBe(1); // reloaded at open
    await s.save(b('sip:old@1.2.3.4', 'alice@example.com', 9));
    await s.remove('alice@example.com', 'sip:old@1.2.3.4');
    await s.flush();
    expect(db.ops).toEqual(['remove sip:old@1.2.3.4']);
    expect(await db.lookup('alice@example.com')).toEqual([]);
    await s.close();
  });

  it('close() writes everything still pending (graceful stop loses nothing)', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events });
    await s.save(b('sip:a@1.2.3.4'));
    await s.save(b('sip:x@5.6.7.8', 'bob@example.com'));
    await s.close();
    expect(db.ops.sort()).toEqual(['save sip:a@1.2.3.4 1', 'save sip:x@5.6.7.8 1']);
    expect(r.unwritten).toEqual([]);
  });

  it('flushes by itself once the threshold of pending changes is reached', async () => {
    const db = new FakeDb();
    const s = await open(db, { flushThreshold: 3 });
    await s.save(b('sip:1@h'));
    await s.save(b('sip:2@h'));
    await s.save(b('sip:3@h'));
    await s.flush(); // joins the flush the threshold started
    expect(db.ops.length).toBe(3);
    await s.close();
  });
});

describe('write-back: a change that can never be written is refused before it is queued', () => {
  it('an over-long Call-ID, User-Agent or Contact, or an out-of-range CSeq: StoreError INVALID, nothing stored or queued', async () => {
    const db = new FakeDb();
    const s = await open(db);
    const bad: Binding[] = [
      b('sip:a@h', 'alice@example.com', 1, { callId: 'c'.repeat(256) }),
      b('sip:a@h', 'alice@example.com', 1, { userAgent: 'u'.repeat(256) }),
      b(`sip:${'a'.repeat(520)}@h`),
      b('sip:a@h', 'alice@example.com', 2 ** 31),
      b('sip:a@h', 'alice@example.com', 1, { path: ['<sip:p1.example.com;lr>'.repeat(30)] }),
      b('sip:a@h', `${'u'.repeat(65)}@example.com`),
    ];
    for (const x of bad) await expect(s.save(x)).rejects.toMatchObject({ name: 'StoreError', code: 'INVALID' });
    expect(s.backlog).toBe(0);
    expect(await s.list()).toEqual([]);
    await s.close();
    expect(db.attempts).toEqual([]);
  });

  it('removeAll("") and a malformed AOR (DELETE /location/ with an empty AOR): INVALID, nothing queued, later writes land', async () => {
    const db = new FakeDb();
    const s = await open(db);
    await expect(s.removeAll('')).rejects.toMatchObject({ code: 'INVALID' });
    await expect(s.removeAll('no-at-sign')).rejects.toMatchObject({ code: 'INVALID' });
    await expect(s.remove('@example.com', 'sip:a@h')).rejects.toMatchObject({ code: 'INVALID' });
    expect(s.backlog).toBe(0);
    await s.save(b('sip:a@h'));
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1']);
    expect(db.attempts).toEqual(['save sip:a@h']);
    await s.close();
  });
});

describe('write-back: failures', () => {
  it('a change the database refuses for good is dropped and reported once; it neither drops nor blocks the others', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events });
    db.fail = (_op, _aor, contact) => (contact === 'sip:poison@h' ? new StoreError('INVALID', "Data too long for column 'callid'") : undefined);
    await s.save(b('sip:poison@h'));
    for (let i = 1; i <= 4; i++) await s.save(b(`sip:p${i}@h`, `u${i}@example.com`));
    await s.flush();
    expect(await db.contacts()).toEqual(['u1@example.com sip:p1@h 1', 'u2@example.com sip:p2@h 1', 'u3@example.com sip:p3@h 1', 'u4@example.com sip:p4@h 1']);
    expect(s.backlog).toBe(0);
    expect(r.dropped).toEqual([{ op: 'save', aor: 'alice@example.com', contact: 'sip:poison@h' }]);
    expect(r.failures).toEqual(['permanent']);
    // later writes land, and the poison is not tried again
    await s.save(b('sip:later@h', 'bob@example.com'));
    await s.flush();
    expect(await db.contacts()).toContain('bob@example.com sip:later@h 1');
    expect(db.attempts.filter((a) => a === 'save sip:poison@h')).toHaveLength(1);
    // memory still serves the binding the database refused (it is this process's state)
    expect((await s.lookup('alice@example.com')).map((x) => x.contact)).toEqual(['sip:poison@h']);
    await s.close();
  });

  it('five changes made while the database is down all reach it afterwards, saves and removals (the table converges to memory)', async () => {
    const db = new FakeDb();
    await db.save(b('sip:gone@h', 'carol@example.com'));
    await db.save(b('sip:gone1@h', 'dave@example.com'));
    await db.save(b('sip:gone2@h', 'dave@example.com'));
    const { r, events } = reports();
    const s = await open(db, { events });
    db.down = true;
    await s.save(b('sip:new1@h', 'alice@example.com'));
    await s.remove('carol@example.com', 'sip:gone@h');
    await s.save(b('sip:new2@h', 'bob@example.com'));
    await s.removeAll('dave@example.com');
    await s.save(b('sip:new1@h', 'alice@example.com', 2));
    await s.flush();
    await s.flush();
    expect(s.backlog).toBe(4);
    expect(r.unavailable).toHaveLength(1); // one report per outage, not one per attempt
    expect(r.dropped).toEqual([]);
    db.down = false;
    await s.flush();
    expect(s.backlog).toBe(0);
    expect(r.recovered).toHaveLength(1);
    expect(await db.contacts()).toEqual(await memContacts(s));
    expect(await db.contacts()).toEqual(['alice@example.com sip:new1@h 2', 'bob@example.com sip:new2@h 1']);
    await s.close();
    // a restart reloads exactly the live bindings: the removals do not come back
    const again = await open(db);
    expect(await memContacts(again)).toEqual(['alice@example.com sip:new1@h 2', 'bob@example.com sip:new2@h 1']);
    await again.close();
  });

  it('background flushes back off while the database is unavailable (bounded by retryMaxMs) and resume after it', async () => {
    const clock = { t: T0 };
    const db = new FakeDb(() => clock.t);
    const s = await open(db, { flushIntervalMs: 1000, retryMaxMs: 4000 }, () => clock.t);
    db.down = true;
    await s.save(b('sip:a@h'));
    const tries = (): number => db.attempts.length;
    await s.flushDue();
    expect(tries()).toBe(1);
    await s.flushDue(); // still backing off: no attempt
    expect(tries()).toBe(1);
    const gaps: number[] = [];
    for (let i = 0; i < 6; i++) {
      const before = tries();
      let waited = 0;
      while (tries() === before && waited < 60_000) {
        clock.t += 500;
        waited += 500;
        await s.flushDue();
      }
      gaps.push(waited);
    }
    expect(gaps).toEqual([1000, 2000, 4000, 4000, 4000, 4000]);
    db.down = false;
    clock.t += 4000;
    await s.flushDue();
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1']);
    expect(s.backlog).toBe(0);
    await s.close();
  });

  it('a newer change supersedes one waiting for a retry: only the last is written', async () => {
    const db = new FakeDb();
    const s = await open(db);
    db.down = true;
    await s.save(b('sip:a@h', 'alice@example.com', 1));
    await s.flush();
    await s.save(b('sip:a@h', 'alice@example.com', 2));
    await s.remove('alice@example.com', 'sip:a@h');
    await s.save(b('sip:a@h', 'alice@example.com', 3));
    db.down = false;
    db.ops = [];
    await s.flush();
    expect(db.ops).toEqual(['save sip:a@h 3']);
    await s.close();
  });

  it('a row-specific error is retried for that change only; the other AORs are written meanwhile and the order within an AOR is kept', async () => {
    const db = new FakeDb();
    await db.save(b('sip:old@h', 'bob@example.com'));
    const { r, events } = reports();
    const s = await open(db, { events });
    let bobFails = true;
    db.fail = (op, aor) => (bobFails && op === 'removeAll' && aor === 'bob@example.com' ? new Error('Lock wait timeout exceeded') : undefined);
    await s.removeAll('bob@example.com');
    await s.save(b('sip:new@h', 'bob@example.com')); // must not be written before the removeAll
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'bob@example.com sip:old@h 1']);
    expect(r.retrying).toEqual([{ op: 'removeAll', aor: 'bob@example.com' }]);
    expect(r.failures).toEqual(['transient']);
    bobFails = false;
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'bob@example.com sip:new@h 1']);
    expect(s.backlog).toBe(0);
    await s.close();
  });

  it('the changes of one AOR keep their order through an outage: a flow moving to a new contact (same ruid) is not dropped as a duplicate', async () => {
    const db = new FakeDb();
    await db.save(b('sip:old@h', 'alice@example.com', 1, { ruid: 'R' }));
    const { r, events } = reports();
    const s = await open(db, { events });
    db.down = true;
    // RFC 5626: the same instance + reg-id registers from a new address: remove the old contact, save the new one with the same ruid
    await s.remove('alice@example.com', 'sip:old@h');
    await s.save(b('sip:new@h', 'alice@example.com', 2, { ruid: 'R' }));
    await s.flush();
    db.down = false;
    await s.flush();
    expect(r.dropped).toEqual([]);
    expect(await db.contacts()).toEqual(['alice@example.com sip:new@h 2']);
    await s.close();
  });

  it('a row-specific error holds back the later changes of its AOR only', async () => {
    const db = new FakeDb();
    await db.save(b('sip:old@h', 'alice@example.com', 1, { ruid: 'R' }));
    const s = await open(db);
    let failing = true;
    db.fail = (op, _aor, contact) => (failing && op === 'remove' && contact === 'sip:old@h' ? new Error('Lock wait timeout exceeded') : undefined);
    await s.remove('alice@example.com', 'sip:old@h');
    await s.save(b('sip:new@h', 'alice@example.com', 2, { ruid: 'R' }));
    await s.save(b('sip:x@h', 'bob@example.com'));
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:old@h 1', 'bob@example.com sip:x@h 1']);
    failing = false;
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:new@h 2', 'bob@example.com sip:x@h 1']);
    await s.close();
  });

  it('a change made while its predecessor is being written is not lost, and lands after it', async () => {
    const db = new FakeDb();
    const s = await open(db);
    let release: () => void = () => undefined;
    const slow = new Promise<void>((res) => (release = res));
    const origSave = db.save.bind(db);
    let first = true;
    db.save = async (x) => {
      if (first) {
        first = false;
        await slow;
      }
      return origSave(x);
    };
    await s.save(b('sip:a@h', 'alice@example.com', 1));
    const f = s.flush();
    await s.save(b('sip:a@h', 'alice@example.com', 2)); // while cseq 1 is in flight
    release();
    await f;
    await s.flush();
    expect(db.ops).toEqual(['save sip:a@h 1', 'save sip:a@h 2']);
    expect(s.backlog).toBe(0);
    await s.close();
  });
});

describe('write-back: close() is bounded', () => {
  it('returns while the database never answers, and reports the changes it could not write', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events, finalFlushMs: 300 });
    db.fail = () => 'hang';
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.remove('bob@example.com', 'sip:b@h');
    await s.close();
    expect(r.unwritten).toHaveLength(1);
    expect(r.unwritten[0]!.sort((x, y) => x.aor.localeCompare(y.aor))).toEqual([
      { op: 'save', aor: 'alice@example.com', contact: 'sip:a@h' },
      { op: 'remove', aor: 'bob@example.com', contact: 'sip:b@h' },
    ]);
  });

  it('returns while the database refuses every connection, reporting what is left', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events, finalFlushMs: 300 });
    db.down = true;
    await s.save(b('sip:a@h'));
    await s.close();
    expect(r.unwritten).toEqual([[{ op: 'save', aor: 'alice@example.com', contact: 'sip:a@h' }]]);
    expect(db.attempts.length).toBeGreaterThanOrEqual(1);
  });

  it('keeps retrying within the bound: a database back before the bound gets everything', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events, finalFlushMs: 10_000 });
    db.down = true;
    await s.save(b('sip:a@h'));
    await s.save(b('sip:b@h', 'bob@example.com'));
    let calls = 0;
    db.fail = () => (++calls <= 3 ? new StoreError('BUSY', 'query timed out') : undefined);
    await s.close();
    expect(r.unwritten).toEqual([]);
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'bob@example.com sip:b@h 1']);
  });

  it('waits for a write in flight only within the bound', async () => {
    const db = new FakeDb();
    const { r, events } = reports();
    const s = await open(db, { events, finalFlushMs: 300 });
    db.fail = () => 'hang';
    await s.save(b('sip:a@h'));
    void s.flush(); // a background flush stuck in the database
    await s.close();
    expect(r.unwritten).toEqual([[{ op: 'save', aor: 'alice@example.com', contact: 'sip:a@h' }]]);
  });
});

/**
 * A database with the batched form: saveMany is one atomic statement (any row refused: nothing
 * written), keyed on the ruid like the SQL stores (the same ruid under another contact moves the row).
 */
class BatchDb extends FakeDb {
  batches: string[][] = [];
  batchFail: (bs: readonly Binding[]) => Error | undefined = () => undefined;
  async saveMany(bs: readonly Binding[]): Promise<void> {
    this.batches.push(bs.map((x) => `${x.contact} ${x.cseq}`));
    const e = this.batchFail(bs);
    if (e !== undefined) throw e;
    for (const x of bs) {
      const v = this.fail('save', x.aor, x.contact);
      if (v instanceof Error) throw v;
    }
    for (const x of bs) await this.upsert(x);
  }
  override async save(x: Binding): Promise<void> {
    this.attempts.push(`save ${x.contact}`);
    const v = this.fail('save', x.aor, x.contact);
    if (v instanceof Error) throw v;
    this.ops.push(`save ${x.contact} ${x.cseq}`);
    await this.upsert(x);
  }
  private async upsert(x: Binding): Promise<void> {
    for (const o of await this.list()) if (o.ruid === x.ruid && o.contact !== x.contact) await MemoryLocationStore.prototype.remove.call(this, o.aor, o.contact);
    await MemoryLocationStore.prototype.save.call(this, x);
  }
}

describe('write-back: batched saves (saveMany)', () => {
  it('consecutive saves of many AORs go as one saveMany; other changes keep their place in the order', async () => {
    const db = new BatchDb();
    await db.save(b('sip:gone@h', 'bob@example.com'));
    db.ops = [];
    const s = await open(db);
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.save(b('sip:b@h', 'alice@example.com'));
    await s.save(b('sip:c@h', 'carol@example.com'));
    await s.remove('bob@example.com', 'sip:gone@h');
    await s.save(b('sip:d@h', 'dave@example.com'));
    await s.flush();
    expect(db.batches).toEqual([['sip:a@h 1', 'sip:b@h 1', 'sip:c@h 1', 'sip:d@h 1']]);
    expect(db.ops).toEqual(['remove sip:gone@h']);
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'alice@example.com sip:b@h 1', 'carol@example.com sip:c@h 1', 'dave@example.com sip:d@h 1']);
    expect(s.backlog).toBe(0);
    await s.close();
  });

  it("an AOR's saves are written before its later remove", async () => {
    const db = new BatchDb();
    const s = await open(db);
    await s.save(b('sip:x@h', 'bob@example.com'));
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.save(b('sip:b@h', 'alice@example.com'));
    await s.flush();
    db.batches = [];
    db.ops = [];
    await s.save(b('sip:a@h', 'alice@example.com', 2));
    await s.save(b('sip:b@h', 'alice@example.com', 2));
    await s.remove('alice@example.com', 'sip:a@h'); // moves a to the end of alice's queue
    await s.flush();
    expect(db.batches).toEqual([]);
    expect(db.ops).toEqual(['save sip:b@h 2', 'remove sip:a@h']);
    await s.close();
  });

  it('one refused row in a batch: the batch is written row by row, only that row is dropped', async () => {
    const db = new BatchDb();
    const { r, events } = reports();
    const s = await open(db, { events });
    db.fail = (op, _aor, contact) => (op === 'save' && contact === 'sip:bad@h' ? new StoreError('INVALID', "Data too long for column 'user_agent'") : undefined);
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.save(b('sip:bad@h', 'bob@example.com'));
    await s.save(b('sip:c@h', 'carol@example.com'));
    await s.flush();
    expect(db.batches).toHaveLength(1);
    expect(db.attempts).toEqual(['save sip:a@h', 'save sip:bad@h', 'save sip:c@h']);
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'carol@example.com sip:c@h 1']);
    expect(r.dropped).toEqual([{ op: 'save', aor: 'bob@example.com', contact: 'sip:bad@h' }]);
    expect(r.failures).toEqual(['permanent']);
    expect(s.backlog).toBe(0);
    await s.close();
  });

  it('a row-specific error in a batch holds back the later changes of that AOR only', async () => {
    const db = new BatchDb();
    const s = await open(db);
    let failing = true;
    db.fail = (op, _aor, contact) => (failing && op === 'save' && contact === 'sip:a1@h' ? new Error('Lock wait timeout exceeded') : undefined);
    await s.save(b('sip:a1@h', 'alice@example.com'));
    await s.save(b('sip:a2@h', 'alice@example.com'));
    await s.save(b('sip:c@h', 'carol@example.com'));
    await s.flush();
    expect(await db.contacts()).toEqual(['carol@example.com sip:c@h 1']);
    expect(s.backlog).toBe(2);
    failing = false;
    await s.flush();
    expect(await db.contacts()).toEqual(['alice@example.com sip:a1@h 1', 'alice@example.com sip:a2@h 1', 'carol@example.com sip:c@h 1']);
    await s.close();
  });

  it('a batch meeting an unavailable database counts one failed attempt, stops the pass and is retried whole', async () => {
    const db = new BatchDb();
    const { r, events } = reports();
    const s = await open(db, { events });
    db.batchFail = () => new StoreError('UNREACHABLE', 'cannot reach MySQL: ECONNREFUSED');
    await s.save(b('sip:a@h', 'alice@example.com'));
    await s.save(b('sip:c@h', 'carol@example.com'));
    await s.flush();
    expect(db.attempts).toEqual([]); // not retried row by row against a database that is down
    expect(r.failures).toEqual(['transient']);
    expect(r.unavailable).toHaveLength(1);
    expect(s.backlog).toBe(2);
    db.batchFail = () => undefined;
    await s.flush();
    expect(db.batches).toHaveLength(2);
    expect(await db.contacts()).toEqual(['alice@example.com sip:a@h 1', 'carol@example.com sip:c@h 1']);
    expect(r.recovered).toEqual([0]);
    await s.close();
  });

  it('a contact removed and saved again under a new ruid while queued: its old row is removed first (the save is keyed on the ruid)', async () => {
    const db = new BatchDb();
    await db.save(b('sip:a@h', 'alice@example.com', 1, { ruid: 'OLD' }));
    db.ops = [];
    const s = await open(db);
    await s.remove('alice@example.com', 'sip:a@h');
    await s.save(b('sip:a@h', 'alice@example.com', 2, { ruid: 'NEW' }));
    await s.save(b('sip:b@h', 'alice@example.com', 2, { ruid: 'B' }));
    await s.flush();
    // (a batch of one is written as a plain save)
    expect(db.ops).toEqual(['remove sip:a@h', 'save sip:a@h 2', 'save sip:b@h 2']);
    expect((await db.list()).map((x) => `${x.contact} ${x.ruid}`).sort()).toEqual(['sip:a@h NEW', 'sip:b@h B']);
    await s.close();
  });

  it('the same ruid saved again (remove in between) stays one batched upsert', async () => {
    const db = new BatchDb();
    const s = await open(db);
    await s.save(b('sip:a@h', 'alice@example.com', 1, { ruid: 'R' }));
    await s.remove('alice@example.com', 'sip:a@h');
    await s.save(b('sip:a@h', 'alice@example.com', 3, { ruid: 'R' }));
    await s.save(b('sip:c@h', 'carol@example.com'));
    await s.flush();
    expect(db.ops).toEqual([]);
    expect(db.batches).toEqual([['sip:a@h 3', 'sip:c@h 1']]);
    await s.close();
  });
});
