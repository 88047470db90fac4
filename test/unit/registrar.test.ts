import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MAX_CONTACT_LEN, Registrar, aorOf, type RegisterSource, type RegistrarOptions } from '../../src/core/registrar.js';
import { parseMessage, parseUri, type SipRequest, type SipResponse } from '../../src/sip/index.js';
import { MemoryLocationStore, StoreError, type Binding, type LocationStore } from '../../src/store/index.js';

const DOMAIN = 'example.com';
const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

const UDP_SRC: RegisterSource = { transport: 'udp', address: '198.51.100.7', port: 40000, local: { transport: 'udp', address: '127.0.0.1', port: 5060 } };

interface Fixture {
  reg: Registrar;
  loc: MemoryLocationStore;
  clock: { t: number };
}

function fixture(over: Partial<RegistrarOptions> = {}): Fixture {
  const clock = { t: T0 };
  const loc = new MemoryLocationStore(() => clock.t);
  let ruid = 0;
  const reg = new Registrar({
    locations: loc,
    domains: (h) => h === DOMAIN,
    minExpires: 60,
    defaultExpires: 3600,
    maxExpires: 7200,
    maxContacts: 3,
    natReceived: true,
    now: () => clock.t,
    newRuid: () => `ruid-${++ruid}`,
    ...over,
  });
  return { reg, loc, clock };
}

interface RegOpts {
  to?: string;
  contacts?: string[];
  expires?: number | string;
  callId?: string;
  cseq?: number;
  userAgent?: string;
  extra?: string[];
}

let branchSeq = 0;
function register(o: RegOpts = {}): SipRequest {
  const lines = [
    `REGISTER sip:${DOMAIN} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-r${++branchSeq};rport`,
    'Max-Forwards: 70',
    `From: <sip:alice@${DOMAIN}>;tag=f1`,
    `To: ${o.to ?? `<sip:alice@${DOMAIN}>`}`,
    `Call-ID: ${o.callId ?? 'reg-1@192.0.2.10'}`,
    `CSeq: ${o.cseq ?? 1} REGISTER`,
    ...(o.contacts ?? ['<sip:alice@192.0.2.10:5060>']).map((c) => `Contact: ${c}`),
    ...(o.expires !== undefined ? [`Expires: ${o.expires}`] : []),
    `User-Agent: ${o.userAgent ?? 'test-phone/1.0'}`,
    ...(o.extra ?? []),
    'Content-Length: 0',
    '',
    '',
  ];
  return parse(lines.join('\r\n'));
}

function parse(text: string | Buffer): SipRequest {
  const m = parseMessage(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
  if (!m.isRequest) throw new Error('not a request');
  return m;
}

function corpus(name: string): SipRequest {
  const url = new URL(`../fixtures/conformance/rfc4475/${name}.sip`, import.meta.url);
  return parse(readFileSync(url));
}

/** Contact values of a 200 as [uri, expires, q]. */
function listed(res: SipResponse): Array<{ uri: string; expires: number; q?: string }> {
  return res.headerValues('contact').map((v) => {
    const m = /^<([^>]*)>;expires=(\d+)(?:;q=([\d.]+))?$/.exec(v);
    if (!m) throw new Error(`unexpected Contact value ${v}`);
    return m[3] !== undefined ? { uri: m[1]!, expires: Number(m[2]), q: m[3] } : { uri: m[1]!, expires: Number(m[2]) };
  });
}

async function only(loc: LocationStore, aor = `alice@${DOMAIN}`): Promise<Binding> {
  const bs = await loc.lookup(aor);
  expect(bs).toHaveLength(1);
  return bs[0]!;
}

// ------------------------------------------------------------------------------------------ basics

describe('Registrar: a plain registration', () => {
  it('stores the binding and answers 200 with the binding, Date and a To-tag', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register(), UDP_SRC);
    expect(res.status).toBe(200);
    expect(res.toTag()).toMatch(/^[0-9a-f]{20}$/);
    expect(listed(res)).toEqual([{ uri: 'sip:alice@192.0.2.10:5060', expires: 3600 }]);
    expect(res.header('date')).toBe('Wed, 01 Jan 2025 12:00:00 GMT');
    const b = await only(loc);
    expect(b).toMatchObject({
      aor: `alice@${DOMAIN}`,
      username: 'alice',
      domain: DOMAIN,
      contact: 'sip:alice@192.0.2.10:5060',
      expires: T0 + 3600_000,
      q: null,
      callId: 'reg-1@192.0.2.10',
      cseq: 1,
      userAgent: 'test-phone/1.0',
      socket: 'udp:127.0.0.1:5060',
      received: 'sip:198.51.100.7:40000',
      ruid: 'ruid-1',
      lastModified: T0,
      flags: 0,
      cflags: 0,
    });
  });

  it('without Contact is a query: lists the bindings, changes nothing', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>', '<sip:b@192.0.2.2>;q=0.5'] }), UDP_SRC);
    const before = await loc.lookup(`alice@${DOMAIN}`);
    const res = await reg.register(register({ contacts: [], cseq: 2 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect(listed(res).map((c) => c.uri)).toEqual(['sip:a@192.0.2.1', 'sip:b@192.0.2.2']);
    expect(await loc.lookup(`alice@${DOMAIN}`)).toEqual(before);
    // a query for an AOR without bindings: 200 with no Contact
    const empty = await reg.register(register({ to: `<sip:nobody@${DOMAIN}>`, contacts: [] }), UDP_SRC);
    expect(empty.status).toBe(200);
    expect(empty.has('contact')).toBe(false);
    expect(empty.has('date')).toBe(true);
  });

  it('the 200 lists every binding with its remaining seconds (injected clock)', async () => {
    const { reg, clock } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>'], expires: 3600 }), UDP_SRC);
    clock.t += 1000_000;
    const res = await reg.register(register({ contacts: ['<sip:b@192.0.2.2>'], expires: 600, callId: 'other', cseq: 1 }), UDP_SRC);
    expect(listed(res)).toEqual(
      expect.arrayContaining([
        { uri: 'sip:a@192.0.2.1', expires: 2600 },
        { uri: 'sip:b@192.0.2.2', expires: 600 },
      ]),
    );
    expect(listed(res)).toHaveLength(2);
    expect(res.header('date')).toBe(new Date(clock.t).toUTCString());
    clock.t += 500; // half a second later the remaining time rounds up
    expect(listed(await reg.register(register({ contacts: [], cseq: 9 }), UDP_SRC))).toContainEqual({ uri: 'sip:a@192.0.2.1', expires: 2600 });
  });

  it('bindings expire on time: lookup stops returning them, expire(now) deletes them', async () => {
    const { reg, loc, clock } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=60', '<sip:b@192.0.2.2>;expires=120'] }), UDP_SRC);
    clock.t += 59_999;
    expect(await loc.lookup(`alice@${DOMAIN}`)).toHaveLength(2);
    clock.t += 1;
    expect((await loc.lookup(`alice@${DOMAIN}`)).map((b) => b.contact)).toEqual(['sip:b@192.0.2.2']);
    expect(await loc.expire(clock.t)).toBe(1);
    expect(listed(await reg.register(register({ contacts: [], cseq: 5 }), UDP_SRC))).toEqual([{ uri: 'sip:b@192.0.2.2', expires: 60 }]);
    clock.t += 60_000;
    expect(await loc.expire(clock.t)).toBe(1);
    expect(await loc.aors()).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ AOR

describe('Registrar: To → AOR', () => {
  it('canonicalises: user unescaped (case kept), host lower-cased, no port or parameters, sip: and sips: alike', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ to: '"Alice" <sip:Al%69ce@EXAMPLE.com:5070;transport=tcp>' }), UDP_SRC);
    expect(await loc.aors()).toEqual([`Alice@${DOMAIN}`]);
    await reg.register(register({ to: `<sips:Alice@${DOMAIN}>`, contacts: ['<sips:alice@192.0.2.10>'], cseq: 2 }), UDP_SRC);
    expect(await loc.lookup(`Alice@${DOMAIN}`)).toHaveLength(2);
    expect(aorOf(parseUri('sip:bob@Example.COM;user=phone'))).toBe(`bob@${DOMAIN}`);
    expect(aorOf(parseUri(`sip:${DOMAIN}`))).toBeNull();
    expect(aorOf(parseUri('tel:+15551234'))).toBeNull();
  });

  it('RFC 4475 escnull: the escaped NUL is kept, not truncated; two distinct contacts are bound', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(corpus('escnull'), UDP_SRC);
    expect(res.status).toBe(200);
    const aor = `null-\u0000-null@${DOMAIN}`;
    expect(await loc.aors()).toEqual([aor]);
    const contacts = (await loc.lookup(aor)).map((b) => b.contact).sort();
    expect(contacts).toEqual(['sip:%00%00@host5.example.com', 'sip:%00@host5.example.com']);
    expect(listed(res)).toHaveLength(2);
    expect(await loc.lookup(`null-@${DOMAIN}`)).toEqual([]);
  });

  it('403 for a domain we do not serve', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register({ to: '<sip:alice@elsewhere.org>' }), UDP_SRC);
    expect(res.status).toBe(403);
    expect(await loc.aors()).toEqual([]);
  });

  it('400 when To is not a SIP/SIPS URI (RFC 4475 unksm2) or has no user part', async () => {
    const { reg } = fixture();
    expect((await reg.register(corpus('unksm2'), UDP_SRC)).status).toBe(400);
    expect((await reg.register(register({ to: '<tel:+15551234>' }), UDP_SRC)).status).toBe(400);
    expect((await reg.register(register({ to: `<sip:${DOMAIN}>` }), UDP_SRC)).status).toBe(400);
  });

  it('400 for unparsable input instead of throwing (RFC 4475 regbadct, scalar02)', async () => {
    const { reg, loc } = fixture();
    expect((await reg.register(corpus('regbadct'), UDP_SRC)).status).toBe(400);
    expect((await reg.register(corpus('scalar02'), UDP_SRC)).status).toBe(400); // CSeq > 2^31
    expect((await reg.register(register({ expires: 'soon' }), UDP_SRC)).status).toBe(400);
    expect((await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=abc'] }), UDP_SRC)).status).toBe(400);
    expect(await loc.aors()).toEqual([]);
  });
});

// ------------------------------------------------------------------------------------------ contacts

describe('Registrar: Contact processing', () => {
  it('* with Expires: 0 removes every binding', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>', '<sip:b@192.0.2.2>'], callId: 'c1', cseq: 1 }), UDP_SRC);
    await reg.register(register({ contacts: ['<sip:c@192.0.2.3>'], callId: 'c2', cseq: 1 }), UDP_SRC);
    const res = await reg.register(register({ contacts: ['*'], expires: 0, callId: 'c3', cseq: 1 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect(res.has('contact')).toBe(false);
    expect(await loc.aors()).toEqual([]);
  });

  it('* is refused (400) without Expires: 0, with another Expires, or next to another contact', async () => {
    const { reg, loc } = fixture();
    await reg.register(register(), UDP_SRC);
    for (const o of [{ contacts: ['*'] }, { contacts: ['*'], expires: 60 }, { contacts: ['*', '<sip:a@192.0.2.1>'], expires: 0 }, { contacts: ['*, <sip:a@192.0.2.1>'], expires: 0 }]) {
      const res = await reg.register(register({ ...o, callId: 'x', cseq: 1 }), UDP_SRC);
      expect(res.status).toBe(400);
    }
    expect(await loc.lookup(`alice@${DOMAIN}`)).toHaveLength(1);
  });

  it('* does not remove a binding of the same Call-ID with a higher or equal CSeq (§10.3 step 6)', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>'], callId: 'same', cseq: 10 }), UDP_SRC);
    await reg.register(register({ contacts: ['<sip:b@192.0.2.2>'], callId: 'other', cseq: 1 }), UDP_SRC);
    const res = await reg.register(register({ contacts: ['*'], expires: 0, callId: 'same', cseq: 10 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect((await loc.lookup(`alice@${DOMAIN}`)).map((b) => b.contact)).toEqual(['sip:a@192.0.2.1']);
    await reg.register(register({ contacts: ['*'], expires: 0, callId: 'same', cseq: 11 }), UDP_SRC);
    expect(await loc.aors()).toEqual([]);
  });

  it('expires: the contact parameter wins over the Expires header, which wins over the default', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=120', '<sip:b@192.0.2.2>'], expires: 300 }), UDP_SRC);
    expect(listed(res)).toEqual(
      expect.arrayContaining([
        { uri: 'sip:a@192.0.2.1', expires: 120 },
        { uri: 'sip:b@192.0.2.2', expires: 300 },
      ]),
    );
    await reg.register(register({ to: `<sip:bob@${DOMAIN}>`, contacts: ['<sip:c@192.0.2.3>'] }), UDP_SRC);
    expect((await only(loc, `bob@${DOMAIN}`)).expires).toBe(T0 + 3600_000);
  });

  it('a contact expires value beyond 2^32-1 counts as absent (RFC 4475 scalar02 rule)', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=280297596632815'], expires: 200 }), UDP_SRC);
    expect((await only(loc)).expires).toBe(T0 + 200_000);
  });

  it('expires 0 removes just that contact', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>', '<sip:b@192.0.2.2>'], cseq: 1 }), UDP_SRC);
    const res = await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=0'], cseq: 2 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect(listed(res).map((c) => c.uri)).toEqual(['sip:b@192.0.2.2']);
    // Expires: 0 header with a contact: removal too; an unknown contact is simply not there
    await reg.register(register({ contacts: ['<sip:b@192.0.2.2>', '<sip:never@192.0.2.9>'], expires: 0, cseq: 3 }), UDP_SRC);
    expect(await loc.aors()).toEqual([]);
  });

  it('423 Interval Too Brief with Min-Expires below min_expires; nothing is stored', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=30', '<sip:b@192.0.2.2>'] }), UDP_SRC);
    expect(res.status).toBe(423);
    expect(res.reason).toBe('Interval Too Brief');
    expect(res.header('min-expires')).toBe('60');
    expect(await loc.aors()).toEqual([]);
    expect((await reg.register(register({ expires: 59 }), UDP_SRC)).status).toBe(423);
    expect((await reg.register(register({ expires: 60 }), UDP_SRC)).status).toBe(200);
  });

  it('expiries above max_expires are reduced to it', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register({ expires: 99999 }), UDP_SRC);
    expect(listed(res)[0]!.expires).toBe(7200);
    expect((await only(loc)).expires).toBe(T0 + 7200_000);
  });

  it('the same contact URI (RFC 3261 URI equality) is refreshed, not duplicated, and keeps its ruid', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:alice@Host.Example.NET:5060>'], cseq: 1 }), UDP_SRC);
    const first = await only(loc);
    await reg.register(register({ contacts: ['<sip:alice@host.example.net:5060>'], cseq: 2 }), UDP_SRC);
    const b = await only(loc);
    expect(b.contact).toBe('sip:alice@host.example.net:5060');
    expect(b.cseq).toBe(2);
    expect(b.ruid).toBe(first.ruid);
  });

  it('a contact longer than the location column is refused with 400', async () => {
    const { reg } = fixture();
    const long = `<sip:${'a'.repeat(MAX_CONTACT_LEN)}@192.0.2.1>`;
    expect((await reg.register(register({ contacts: [long] }), UDP_SRC)).status).toBe(400);
  });
});

describe('Registrar: Call-ID + CSeq ordering (§10.3 step 7)', () => {
  it('same Call-ID with a lower or equal CSeq does not overwrite newer state', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ callId: 'cid', cseq: 5, expires: 3600 }), UDP_SRC);
    // a delayed older REGISTER trying to remove the binding
    let res = await reg.register(register({ callId: 'cid', cseq: 4, expires: 0 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect(listed(res)).toEqual([{ uri: 'sip:alice@192.0.2.10:5060', expires: 3600 }]);
    // the same CSeq again (a new transaction repeating it) changes nothing either
    res = await reg.register(register({ callId: 'cid', cseq: 5, expires: 120 }), UDP_SRC);
    expect((await only(loc)).expires).toBe(T0 + 3600_000);
    // a higher CSeq applies
    await reg.register(register({ callId: 'cid', cseq: 6, expires: 120 }), UDP_SRC);
    expect((await only(loc)).expires).toBe(T0 + 120_000);
    await reg.register(register({ callId: 'cid', cseq: 7, expires: 0 }), UDP_SRC);
    expect(await loc.aors()).toEqual([]);
  });

  it('a different Call-ID replaces the binding whatever its CSeq', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ callId: 'old', cseq: 100 }), UDP_SRC);
    await reg.register(register({ callId: 'new', cseq: 1, expires: 300 }), UDP_SRC);
    const b = await only(loc);
    expect(b).toMatchObject({ callId: 'new', cseq: 1, expires: T0 + 300_000 });
  });
});

describe('Registrar: q-values', () => {
  it('stores q and lists higher q first', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(register({ contacts: ['<sip:low@192.0.2.1>;q=0.1', '<sip:high@192.0.2.2>;q=1.0', '<sip:mid@192.0.2.3>;q=0.500'] }), UDP_SRC);
    expect(listed(res)).toEqual([
      { uri: 'sip:high@192.0.2.2', expires: 3600, q: '1' },
      { uri: 'sip:mid@192.0.2.3', expires: 3600, q: '0.5' },
      { uri: 'sip:low@192.0.2.1', expires: 3600, q: '0.1' },
    ]);
    expect((await loc.lookup(`alice@${DOMAIN}`)).map((b) => b.q)).toEqual([1, 0.5, 0.1]);
  });

  it('q=0 and three decimals are fine', async () => {
    const { reg } = fixture();
    const res = await reg.register(register({ contacts: ['<sip:z@192.0.2.1>;q=0', '<sip:t@192.0.2.2>;q=0.125'] }), UDP_SRC);
    expect(listed(res).map((c) => c.q)).toEqual(['0.125', '0']);
  });

  for (const q of ['1.5', '0.1234', 'abc', '-0.5', '2', '.5']) {
    it(`q=${q} is refused with 400`, async () => {
      const { reg, loc } = fixture();
      const res = await reg.register(register({ contacts: [`<sip:a@192.0.2.1>;q=${q}`] }), UDP_SRC);
      expect(res.status).toBe(400);
      expect(await loc.aors()).toEqual([]);
    });
  }
});

describe('Registrar: max contacts', () => {
  it('503 Too Many Registered Contacts beyond max_contacts, with no change', async () => {
    const { reg, loc } = fixture({ maxContacts: 3 });
    await reg.register(register({ contacts: ['<sip:a@192.0.2.1>', '<sip:b@192.0.2.2>'], callId: 'c1' }), UDP_SRC);
    const res = await reg.register(register({ contacts: ['<sip:c@192.0.2.3>', '<sip:d@192.0.2.4>'], callId: 'c2' }), UDP_SRC);
    expect(res.status).toBe(503);
    expect(res.reason).toBe('Too Many Registered Contacts');
    expect(await loc.lookup(`alice@${DOMAIN}`)).toHaveLength(2);
    // up to the limit is fine, refreshing at the limit too
    expect((await reg.register(register({ contacts: ['<sip:c@192.0.2.3>'], callId: 'c2' }), UDP_SRC)).status).toBe(200);
    expect((await reg.register(register({ contacts: ['<sip:a@192.0.2.1>'], callId: 'c1', cseq: 2 }), UDP_SRC)).status).toBe(200);
    // replacing one contact by another in one request stays within the limit
    const swap = await reg.register(register({ contacts: ['<sip:a@192.0.2.1>;expires=0', '<sip:d@192.0.2.4>'], callId: 'c1', cseq: 3 }), UDP_SRC);
    expect(swap.status).toBe(200);
    expect((await loc.lookup(`alice@${DOMAIN}`)).map((b) => b.contact).sort()).toEqual(['sip:b@192.0.2.2', 'sip:c@192.0.2.3', 'sip:d@192.0.2.4']);
  });

  it('0 means unlimited', async () => {
    const { reg, loc } = fixture({ maxContacts: 0 });
    const contacts = Array.from({ length: 20 }, (_, i) => `<sip:c${i}@192.0.2.1>`);
    expect((await reg.register(register({ contacts }), UDP_SRC)).status).toBe(200);
    expect(await loc.lookup(`alice@${DOMAIN}`)).toHaveLength(20);
  });
});

describe('Registrar: Path, received, socket, instance', () => {
  it('stores Path (RFC 3327) and echoes it in the 200 only with Supported: path', async () => {
    const { reg, loc } = fixture();
    const path = ['Path: <sip:edge1.example.net;lr>', 'Path: <sip:edge2.example.net;lr>'];
    let res = await reg.register(register({ extra: path, cseq: 1 }), UDP_SRC);
    expect(res.has('path')).toBe(false);
    expect((await only(loc)).path).toEqual(['<sip:edge1.example.net;lr>', '<sip:edge2.example.net;lr>']);
    res = await reg.register(register({ extra: [...path, 'Supported: outbound, path'], cseq: 2 }), UDP_SRC);
    expect(res.headerValues('path')).toEqual(['<sip:edge1.example.net;lr>', '<sip:edge2.example.net;lr>']);
    // a later REGISTER without Path drops it
    await reg.register(register({ cseq: 3 }), UDP_SRC);
    expect((await only(loc)).path).toBeUndefined();
  });

  it('400 for a malformed Path', async () => {
    const { reg } = fixture();
    expect((await reg.register(register({ extra: ['Path: <sip:edge1.example.net;lr'] }), UDP_SRC)).status).toBe(400);
  });

  it('received: always for UDP; for TCP only when the Contact differs from the source; never when disabled', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ contacts: ['<sip:alice@198.51.100.7:40000>'] }), UDP_SRC);
    expect((await only(loc)).received).toBe('sip:198.51.100.7:40000');

    const tcp: RegisterSource = { transport: 'tcp', address: '203.0.113.5', port: 51000, local: { transport: 'tcp', address: '127.0.0.1', port: 5060 } };
    const f2 = fixture();
    await f2.reg.register(register({ to: `<sip:bob@${DOMAIN}>`, contacts: ['<sip:bob@203.0.113.5:51000;transport=tcp>'] }), tcp);
    const direct = await only(f2.loc, `bob@${DOMAIN}`);
    expect(direct.received).toBeUndefined();
    expect(direct.socket).toBe('tcp:127.0.0.1:5060');
    await f2.reg.register(register({ to: `<sip:carol@${DOMAIN}>`, contacts: ['<sip:carol@10.0.0.5:5060;transport=tcp>'] }), tcp);
    expect((await only(f2.loc, `carol@${DOMAIN}`)).received).toBe('sip:203.0.113.5:51000;transport=tcp');

    const off = fixture({ natReceived: false });
    await off.reg.register(register(), UDP_SRC);
    expect((await only(off.loc)).received).toBeUndefined();
  });

  it('IPv6 sources and sockets are bracketed', async () => {
    const { reg, loc } = fixture();
    const v6: RegisterSource = { transport: 'udp', address: '2001:db8::7', port: 5062, local: { transport: 'udp', address: '::1', port: 5060 } };
    await reg.register(register(), v6);
    const b = await only(loc);
    expect(b.received).toBe('sip:[2001:db8::7]:5062');
    expect(b.socket).toBe('udp:[::1]:5060');
  });

  it('stores +sip.instance and reg-id; the same instance + reg-id replaces the old contact (RFC 5626)', async () => {
    const { reg, loc } = fixture();
    const inst = '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"';
    await reg.register(register({ contacts: [`<sip:alice@192.0.2.10:5060>;+sip.instance=${inst};reg-id=1`], cseq: 1 }), UDP_SRC);
    const first = await only(loc);
    expect(first.instance).toBe('<urn:uuid:00000000-0000-1000-8000-000A95A0E128>');
    expect(first.regId).toBe(1);
    // the phone moved (new IP): same instance and reg-id → one binding, new contact, same ruid
    await reg.register(register({ contacts: [`<sip:alice@192.0.2.99:5060>;+sip.instance=${inst};reg-id=1`], cseq: 2 }), UDP_SRC);
    const moved = await only(loc);
    expect(moved.contact).toBe('sip:alice@192.0.2.99:5060');
    expect(moved.ruid).toBe(first.ruid);
    // another reg-id is another flow
    await reg.register(register({ contacts: [`<sip:alice@192.0.2.99:5070>;+sip.instance=${inst};reg-id=2`], cseq: 3 }), UDP_SRC);
    expect(await loc.lookup(`alice@${DOMAIN}`)).toHaveLength(2);
    expect((await reg.register(register({ contacts: ['<sip:x@192.0.2.1>;reg-id=0'], cseq: 4 }), UDP_SRC)).status).toBe(400);
  });
});

describe('Registrar: a field the location table cannot hold is refused with 400 naming it, and nothing is stored', () => {
  /** A location store that records every change it is asked for. */
  function recording(): { loc: MemoryLocationStore; changes: string[]; store: LocationStore } {
    const loc = new MemoryLocationStore(() => T0);
    const changes: string[] = [];
    const store: LocationStore = {
      lookup: (a) => loc.lookup(a),
      save: (b) => (changes.push(`save ${b.contact}`), loc.save(b)),
      remove: (a, c) => (changes.push(`remove ${c}`), loc.remove(a, c)),
      removeAll: (a) => (changes.push(`removeAll ${a}`), loc.removeAll(a)),
      expire: (n) => loc.expire(n),
      list: () => loc.list(),
      aors: () => loc.aors(),
      counts: () => loc.counts(),
      close: () => loc.close(),
    };
    return { loc, changes, store };
  }

  const inst = (n: number): string => `"<urn:uuid:${'0'.repeat(n - 11)}>"`; // unquoted: <urn:uuid:...> is n characters
  const pathOf = (n: number): string => `Path: <sip:${'p'.repeat(n - 9)};lr>`; // the value is n characters
  const cases: Array<[string, Partial<RegOpts>, string]> = [
    ['Call-ID of 256 bytes', { callId: `${'c'.repeat(251)}@host` }, 'Bad Request (Call-ID too long)'],
    ['Call-ID of 300 bytes', { callId: 'x'.repeat(300) }, 'Bad Request (Call-ID too long)'],
    ['User-Agent of 256 bytes (was silently truncated to 255)', { userAgent: 'u'.repeat(256) }, 'Bad Request (User-Agent too long)'],
    ['Path values of 513 bytes joined', { extra: [pathOf(256), pathOf(256)] }, 'Bad Request (Path too long)'],
    ['+sip.instance of 256 characters', { contacts: [`<sip:alice@192.0.2.10:5060>;+sip.instance=${inst(256)};reg-id=1`] }, 'Bad Request (+sip.instance too long)'],
    ['To user of 65 characters', { to: `<sip:${'a'.repeat(65)}@${DOMAIN}>` }, 'Bad Request (To user too long)'],
    ['Contact URI of 513 characters', { contacts: [`<sip:${'a'.repeat(498)}@192.0.2.1:5060>`] }, 'Bad Request (Contact URI too long)'],
    ['reg-id of 2^31', { contacts: [`<sip:alice@192.0.2.10:5060>;+sip.instance=${inst(40)};reg-id=2147483648`] }, 'Bad Request (invalid reg-id)'],
  ];
  for (const [name, opts, reason] of cases) {
    it(name, async () => {
      const { loc, changes, store } = recording();
      const { reg } = fixture({ locations: store });
      // an existing binding of the AOR must stay as it is
      const aor = `${aorOf(parseUri(/<([^>]*)>/.exec(opts.to ?? `<sip:alice@${DOMAIN}>`)![1]!))}`;
      const res = await reg.register(register({ ...opts, cseq: 5 }), UDP_SRC);
      expect(res.status).toBe(400);
      expect(res.reason).toBe(reason);
      expect(changes).toEqual([]);
      expect(await loc.lookup(aor)).toEqual([]);
    });
  }

  it('a refused refresh leaves the existing binding untouched', async () => {
    const { loc, changes, store } = recording();
    const { reg } = fixture({ locations: store });
    expect((await reg.register(register({ cseq: 1 }), UDP_SRC)).status).toBe(200);
    const before = await only(loc);
    changes.length = 0;
    const res = await reg.register(register({ cseq: 2, userAgent: 'u'.repeat(300) }), UDP_SRC);
    expect(res.status).toBe(400);
    expect(changes).toEqual([]);
    expect(await only(loc)).toEqual(before);
  });

  it('a To host of 65 characters (in a served domain) is refused too', async () => {
    const host = `${'h'.repeat(61)}.net`;
    const { reg, loc } = fixture({ domains: () => true });
    const res = await reg.register(register({ to: `<sip:alice@${host}>` }), UDP_SRC);
    expect(res.status).toBe(400);
    expect(res.reason).toBe('Bad Request (To host too long)');
    expect(await loc.list()).toEqual([]);
  });

  it('every field exactly at its column size is stored as sent', async () => {
    const { reg, loc } = fixture();
    const callId = `${'c'.repeat(250)}@host`.slice(0, 255);
    const ua = 'u'.repeat(255);
    const res = await reg.register(
      register({
        to: `<sip:${'a'.repeat(64)}@${DOMAIN}>`,
        callId,
        userAgent: ua,
        contacts: [`<sip:${'a'.repeat(493)}@192.0.2.1:5060>;+sip.instance=${inst(255)};reg-id=2147483647`],
        extra: [pathOf(256), pathOf(255)],
      }),
      UDP_SRC,
    );
    expect(res.status).toBe(200);
    const b = await only(loc, `${'a'.repeat(64)}@${DOMAIN}`);
    expect(b.callId).toBe(callId);
    expect(b.userAgent).toBe(ua);
    expect(b.contact).toHaveLength(512);
    expect(b.instance).toHaveLength(255);
    expect(b.regId).toBe(2147483647);
    expect(b.path!.join(',')).toHaveLength(512);
  });

  it('removing a contact (expires=0) is not refused for a long Call-ID or User-Agent: nothing is stored', async () => {
    const { reg, loc } = fixture();
    await reg.register(register({ cseq: 1 }), UDP_SRC);
    const res = await reg.register(register({ callId: 'x'.repeat(300), userAgent: 'u'.repeat(300), expires: 0, cseq: 2 }), UDP_SRC);
    expect(res.status).toBe(200);
    expect(await loc.lookup(`alice@${DOMAIN}`)).toEqual([]);
  });
});

describe('Registrar: Contact URIs stored exactly (RFC 4475)', () => {
  it('cparam01: a parameter outside <> is a header parameter, not part of the URI', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(corpus('cparam01'), UDP_SRC);
    expect(res.status).toBe(200);
    expect((await only(loc, `watson@${DOMAIN}`)).contact).toBe('sip:+19725552222@gw1.example.net');
    expect(listed(res)).toEqual([{ uri: 'sip:+19725552222@gw1.example.net', expires: 3600 }]);
    expect(res.header('contact')).not.toContain('unknownparam');
  });

  it('cparam02: a parameter inside <> is a URI parameter and stays in the binding', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(corpus('cparam02'), UDP_SRC);
    expect(res.status).toBe(200);
    expect((await only(loc, `watson@${DOMAIN}`)).contact).toBe('sip:+19725552222@gw1.example.net;unknownparam');
    expect(listed(res)[0]!.uri).toBe('sip:+19725552222@gw1.example.net;unknownparam');
  });

  it('regescrt: the escaped Route header stays in the contact URI, in the 200 and in later fetches', async () => {
    const { reg, loc } = fixture();
    const res = await reg.register(corpus('regescrt'), UDP_SRC);
    expect(res.status).toBe(200);
    const uri = 'sip:user@example.com?Route=%3Csip:sip.example.com%3E';
    expect((await only(loc, `user@${DOMAIN}`)).contact).toBe(uri);
    expect(listed(res)[0]!.uri).toBe(uri);
    const query = await reg.register(register({ to: `<sip:user@${DOMAIN}>`, contacts: [] }), UDP_SRC);
    expect(listed(query)[0]!.uri).toBe(uri);
  });
});

describe('Registrar: store failures', () => {
  function failingStore(mem: MemoryLocationStore, fail: Partial<Record<'lookup' | 'save' | 'remove', () => Error>>): LocationStore {
    return {
      lookup: async (a) => (fail.lookup ? Promise.reject(fail.lookup()) : mem.lookup(a)),
      save: async (b) => (fail.save ? Promise.reject(fail.save()) : mem.save(b)),
      remove: async (a, c) => (fail.remove ? Promise.reject(fail.remove()) : mem.remove(a, c)),
      removeAll: (a) => mem.removeAll(a),
      expire: (n) => mem.expire(n),
      list: () => mem.list(),
      aors: () => mem.aors(),
      counts: () => mem.counts(),
      close: () => mem.close(),
    };
  }

  it('an unavailable store (unreachable, query timeout, pool queue full) answers 503 with Retry-After, never throws', async () => {
    for (const code of ['UNREACHABLE', 'BUSY'] as const) {
      for (const where of ['lookup', 'save', 'remove'] as const) {
        const mem = new MemoryLocationStore(() => T0);
        const warnings: string[] = [];
        const { reg } = fixture({ locations: failingStore(mem, { [where]: () => new StoreError(code, 'MySQL 127.0.0.1:3306: query timed out') }), logger: { warn: (o) => warnings.push(JSON.stringify(o)) } });
        // remove: a REGISTER that removes a contact
        if (where === 'remove') await mem.save({ aor: `alice@${DOMAIN}`, username: 'alice', domain: DOMAIN, contact: 'sip:alice@192.0.2.10:5060', expires: T0 + 60_000, q: null, callId: 'old', cseq: 1, ruid: 'r', lastModified: T0, flags: 0, cflags: 0 });
        const res = await reg.register(register(where === 'remove' ? { expires: 0 } : {}), UDP_SRC);
        expect(res.status, `${code} ${where}`).toBe(503);
        expect(res.header('retry-after'), `${code} ${where}`).toMatch(/^\d+$/);
        expect(res.reason.length).toBeLessThan(60);
        expect(warnings).toHaveLength(1);
      }
    }
  });

  it('any other store failure answers 500 with a short reason', async () => {
    const mem = new MemoryLocationStore(() => T0);
    const broken = failingStore(mem, { lookup: () => new StoreError('DB', 'MySQL: something odd') });
    const res = await fixture({ locations: broken }).reg.register(register(), UDP_SRC);
    expect(res.status).toBe(500);
    expect(res.header('retry-after')).toBeUndefined();
    expect(res.reason.length).toBeLessThan(60);
    const saveFails = failingStore(mem, { save: () => new Error('disk full') });
    expect((await fixture({ locations: saveFails }).reg.register(register(), UDP_SRC)).status).toBe(500);
  });
});

describe('Registrar: a store that answers at once and one that answers through Promises', () => {
  it('give the same responses and bindings (add, refresh, second contact, 423, stale CSeq, too many, remove, star)', async () => {
    const steps: RegOpts[] = [
      { contacts: ['<sip:alice@192.0.2.10:5060>'], cseq: 1 },
      { contacts: ['<sip:alice@192.0.2.10:5060>;expires=120'], cseq: 2 },
      { contacts: ['<sip:alice@192.0.2.11:5060>;q=0.5'], cseq: 3 },
      { contacts: ['<sip:alice@192.0.2.12:5060>'], expires: 10, cseq: 4 },
      { contacts: ['<sip:alice@192.0.2.10:5060>;expires=0'], cseq: 2 },
      { contacts: ['<sip:alice@192.0.2.13>', '<sip:alice@192.0.2.14>', '<sip:alice@192.0.2.15>'], cseq: 5 },
      { contacts: ['<sip:alice@192.0.2.11:5060>;expires=0'], cseq: 6 },
      { contacts: [], cseq: 7 },
      { contacts: ['*'], expires: 0, cseq: 8 },
      { contacts: [], cseq: 9 },
    ];
    const run = async (promisesOnly: boolean): Promise<string[]> => {
      const f = fixture();
      const mem = f.loc;
      // only the Promise methods (as a db-only store has): the registrar waits on each call
      const store: LocationStore = promisesOnly
        ? {
            lookup: (a) => mem.lookup(a),
            save: (b) => mem.save(b),
            remove: (a, c) => mem.remove(a, c),
            removeAll: (a) => mem.removeAll(a),
            expire: (n) => mem.expire(n),
            list: () => mem.list(),
            aors: () => mem.aors(),
            counts: () => mem.counts(),
            close: () => mem.close(),
          }
        : mem;
      let ruid = 0;
      const reg = new Registrar({ locations: store, domains: (h) => h === DOMAIN, minExpires: 60, defaultExpires: 3600, maxExpires: 7200, maxContacts: 3, natReceived: true, now: () => f.clock.t, newRuid: () => `ruid-${++ruid}` });
      const out: string[] = [];
      for (const o of steps) {
        const answer = reg.register(register(o), UDP_SRC);
        // at once from memory (a refusal before the store is asked is at once either way)
        if (!promisesOnly) expect(answer instanceof Promise).toBe(false);
        const res = await answer;
        out.push(`${res.status} ${res.reason} ${res.headerValues('contact').join(' | ')} ${res.headerValues('min-expires').join()}`);
        out.push(JSON.stringify(await mem.lookup(`alice@${DOMAIN}`)));
        f.clock.t += 1000;
      }
      return out;
    };
    const now = await run(false);
    expect(await run(true)).toEqual(now);
    expect(now.filter((l) => /^(200|423|503) /.test(l)).map((l) => l.slice(0, 3))).toEqual(['200', '200', '200', '423', '200', '503', '200', '200', '200', '200']);
  });
});
