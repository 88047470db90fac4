/**
 * usrloc db_mode 2 (write-back): memory answers at once, the database catches up on flush,
 * pending changes keep their order (last change per binding wins), close() flushes, failures retry.
 */
import { describe, expect, it } from 'vitest';
import { MemoryLocationStore, WriteBackLocationStore, type Binding, type LocationStore } from '../../src/store/index.js';

const T0 = 1_700_000_000_000;
const now = (): number => T0;

function b(contact: string, aor = 'alice@example.com', cseq = 1): Binding {
  const [username, domain] = aor.split('@') as [string, string];
  return { aor, username, domain, contact, expires: T0 + 3600_000, q: null, callId: 'c1', cseq, ruid: `r-${contact}`, lastModified: T0, flags: 0, cflags: 0 };
}

/** A database stand-in that records the operations applied to it, and can be made to fail. */
class RecordingDb extends MemoryLocationStore {
  ops: string[] = [];
  failing = false;
  constructor() {
    super(now);
  }
  override async save(x: Binding): Promise<void> {
    if (this.failing) throw new Error('db down');
    this.ops.push(`save ${x.contact} ${x.cseq}`);
    return super.save(x);
  }
  override async remove(aor: string, contact: string): Promise<boolean> {
    if (this.failing) throw new Error('db down');
    this.ops.push(`remove ${contact}`);
    return super.remove(aor, contact);
  }
  override async removeAll(aor: string): Promise<number> {
    if (this.failing) throw new Error('db down');
    this.ops.push(`removeAll ${aor}`);
    return super.removeAll(aor);
  }
}

async function open(db: LocationStore, errors: unknown[] = []): Promise<WriteBackLocationStore> {
  return WriteBackLocationStore.open(db, now, { flushIntervalMs: 3_600_000, flushThreshold: 1000, onError: (e) => errors.push(e) });
}

describe('write-back location store', () => {
  it('answers lookups from memory before the database has the binding, and writes it on flush', async () => {
    const db = new RecordingDb();
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

  it('coalesces repeated changes of one binding: only the last is written', async () => {
    const db = new RecordingDb();
    const s = await open(db);
    for (let cseq = 1; cseq <= 5; cseq++) await s.save(b('sip:a@1.2.3.4', 'alice@example.com', cseq));
    await s.flush();
    expect(db.ops).toEqual(['save sip:a@1.2.3.4 5']);
    await s.close();
  });

  it('keeps the order of changes: save, remove-all, save again leaves the last binding in the database', async () => {
    const db = new RecordingDb();
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
    const db = new RecordingDb();
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
    const db = new RecordingDb();
    const s = await open(db);
    await s.save(b('sip:a@1.2.3.4'));
    await s.save(b('sip:x@5.6.7.8', 'bob@example.com'));
    await s.close();
    expect(db.ops.sort()).toEqual(['save sip:a@1.2.3.4 1', 'save sip:x@5.6.7.8 1']);
  });

  it('a failing database write is reported and retried at the next flush', async () => {
    const db = new RecordingDb();
    const errors: unknown[] = [];
    const s = await open(db, errors);
    db.failing = true;
    await s.save(b('sip:a@1.2.3.4'));
    await s.flush();
    expect(errors.length).toBe(1);
    expect(s.backlog).toBe(1);
    expect((await s.lookup('alice@example.com')).length).toBe(1); // still served from memory
    db.failing = false;
    await s.flush();
    expect(s.backlog).toBe(0);
    expect(db.ops).toEqual(['save sip:a@1.2.3.4 1']);
    await s.close();
  });

  it('flushes by itself once the threshold of pending changes is reached', async () => {
    const db = new RecordingDb();
    const s = await WriteBackLocationStore.open(db, now, { flushIntervalMs: 3_600_000, flushThreshold: 3 });
    await s.save(b('sip:1@h'));
    await s.save(b('sip:2@h'));
    await s.save(b('sip:3@h'));
    await s.flush(); // joins the flush the threshold started
    expect(db.ops.length).toBe(3);
    await s.close();
  });
});
