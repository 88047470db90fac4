import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  DigestAuthenticator,
  NonceCountTracker,
  digestHa1,
  digestResponse,
  statelessToTag,
  stripCredentials,
  type AuthResult,
  type DigestAlgorithmName,
  type DigestAuthOptions,
} from '../../src/core/auth.js';
import { formatAuthHeader, parseAuthHeader, parseMessage, type SipRequest, type SipResponse } from '../../src/sip/index.js';
import { CachedSubscriberStore, MemorySubscriberStore, StoreError, computeHa1, computeHa1b, type Subscriber, type SubscriberStore } from '../../src/store/index.js';

const DOMAIN = 'example.com';
const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

// ------------------------------------------------------------------------------------------ helpers

interface ReqOpts {
  method?: string;
  ruri?: string;
  fromUser?: string;
  toUser?: string;
  branch?: string;
  callId?: string;
  cseq?: number;
  extra?: string[];
}

let branchSeq = 0;
function request(o: ReqOpts = {}): SipRequest {
  const method = o.method ?? 'REGISTER';
  const fromUser = o.fromUser ?? 'alice';
  const toUser = o.toUser ?? fromUser;
  const ruri = o.ruri ?? (method === 'REGISTER' ? `sip:${DOMAIN}` : `sip:${toUser}@${DOMAIN}`);
  const lines = [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.10:5060;branch=${o.branch ?? `z9hG4bK-${++branchSeq}`};rport`,
    'Max-Forwards: 70',
    `From: <sip:${fromUser}@${DOMAIN}>;tag=f1`,
    `To: <sip:${toUser}@${DOMAIN}>`,
    `Call-ID: ${o.callId ?? 'call-1@192.0.2.10'}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    'Contact: <sip:alice@192.0.2.10:5060>',
    ...(o.extra ?? []),
    'Content-Length: 0',
    '',
    '',
  ];
  const m = parseMessage(Buffer.from(lines.join('\r\n'), 'latin1'));
  if (!m.isRequest) throw new Error('not a request');
  return m;
}

interface Fixture {
  auth: DigestAuthenticator;
  subs: MemorySubscriberStore;
  clock: { t: number };
  logs: string[];
}

async function fixture(over: Partial<DigestAuthOptions> = {}): Promise<Fixture> {
  const subs = new MemorySubscriberStore();
  await subs.add('alice', DOMAIN, 'wonderland');
  await subs.add('bob', DOMAIN, 'builder');
  const clock = { t: T0 };
  let counter = 0;
  const logs: string[] = [];
  const log = (obj: object, msg?: string): void => {
    logs.push(JSON.stringify({ ...obj, msg }));
  };
  const auth = new DigestAuthenticator({
    subscribers: subs,
    secret: Buffer.from('0123456789abcdef0123456789abcdef'),
    nonceLifetimeS: 300,
    algorithms: ['MD5', 'SHA-256'],
    qop: 'auth',
    checkUri: false,
    ncWindow: 1000,
    now: () => clock.t,
    random: (n) => {
      const b = Buffer.alloc(n);
      b.writeUInt32BE(++counter % 0x100000000, 0);
      return b;
    },
    logger: { debug: log, warn: log },
    ...over,
  });
  return { auth, subs, clock, logs };
}

function challenges(res: SipResponse): Map<string, ReadonlyMap<string, string>> {
  const name = res.status === 401 ? 'www-authenticate' : 'proxy-authenticate';
  const out = new Map<string, ReadonlyMap<string, string>>();
  for (const v of res.headerValues(name)) {
    const a = parseAuthHeader(v);
    out.set(a.params.get('algorithm') ?? 'MD5', a.params);
  }
  return out;
}

interface AnswerOpts {
  algorithm?: DigestAlgorithmName;
  username?: string;
  password?: string;
  nc?: number;
  cnonce?: string;
  qop?: boolean;
  uri?: string;
  realm?: string;
  opaque?: string | null;
  nonce?: string;
  header?: 'Authorization' | 'Proxy-Authorization';
}

/** A UA's answer to `chal`, as the header line to add to the next request. */
function answer(chal: SipResponse, method: string, o: AnswerOpts = {}): string {
  const algorithm = o.algorithm ?? 'MD5';
  const c = challenges(chal).get(algorithm);
  if (c === undefined) throw new Error(`no ${algorithm} challenge`);
  const realm = o.realm ?? c.get('realm')!;
  const nonce = o.nonce ?? c.get('nonce')!;
  const username = o.username ?? 'alice';
  const uri = o.uri ?? 'sip:127.0.0.1:5060';
  const useQop = (o.qop ?? true) && c.get('qop') !== undefined;
  const nc = (o.nc ?? 1).toString(16).padStart(8, '0');
  const cnonce = o.cnonce ?? 'c0ffee';
  const ha1 = digestHa1(algorithm, username, realm, o.password ?? 'wonderland');
  const response = digestResponse({ algorithm, ha1, method, uri, nonce, ...(useQop ? { qop: 'auth' as const, nc, cnonce } : {}) });
  let v = `Digest username="${username}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}`;
  if (useQop) v += `, qop=auth, nc=${nc}, cnonce="${cnonce}"`;
  const opaque = o.opaque === undefined ? c.get('opaque') : o.opaque;
  if (opaque !== null && opaque !== undefined) v += `, opaque="${opaque}"`;
  const header = o.header ?? (chal.status === 401 ? 'Authorization' : 'Proxy-Authorization');
  return `${header}: ${v}`;
}

/** A SubscriberStore whose get() is replaced; the rest delegates to an empty memory store. */
function storeWith(get: SubscriberStore['get']): SubscriberStore {
  const base = new MemorySubscriberStore();
  return {
    get,
    add: (u, d, p) => base.add(u, d, p),
    remove: (u, d) => base.remove(u, d),
    setPassword: (u, d, p) => base.setPassword(u, d, p),
    list: (d) => base.list(d),
    close: () => base.close(),
  };
}

function failed(r: AuthResult): Extract<AuthResult, { ok: false }> {
  if (r.ok) throw new Error(`expected failure, got ok for ${r.user}`);
  return r;
}

/** A response with its nonce and opaque values blanked, for shape comparisons. */
function shape(res: SipResponse): string {
  return res
    .toString()
    .replace(/nonce="[^"]*"/g, 'nonce="N"')
    .replace(/opaque="[^"]*"/g, 'opaque="O"');
}

// ------------------------------------------------------------------------------------------ hashing

describe('digestResponse (worked examples)', () => {
  it('RFC 2617 §3.5: MD5, qop=auth', () => {
    const ha1 = digestHa1('MD5', 'Mufasa', 'testrealm@host.com', 'Circle Of Life');
    expect(
      digestResponse({
        algorithm: 'MD5',
        ha1,
        method: 'GET',
        uri: '/dir/index.html',
        nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093',
        qop: 'auth',
        nc: '00000001',
        cnonce: '0a4f113b',
      }),
    ).toBe('6629fae49393a05397450978507c4ef1');
  });

  const rfc7616 = {
    method: 'GET',
    uri: '/dir/index.html',
    nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
    qop: 'auth' as const,
    nc: '00000001',
    cnonce: 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ',
  };

  it('RFC 7616 §3.9.1: SHA-256', () => {
    const ha1 = digestHa1('SHA-256', 'Mufasa', 'http-auth@example.org', 'Circle of Life');
    expect(digestResponse({ algorithm: 'SHA-256', ha1, ...rfc7616 })).toBe('753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1');
  });

  it('RFC 7616 §3.9.1: MD5', () => {
    const ha1 = digestHa1('MD5', 'Mufasa', 'http-auth@example.org', 'Circle of Life');
    expect(digestResponse({ algorithm: 'MD5', ha1, ...rfc7616 })).toBe('8ca523f5e9506fed4657c9700eebdbec');
  });

  it('RFC 2069 (no qop): H(HA1:nonce:HA2)', () => {
    // the RFC 2069 §2.4 example values (there the password is "CircleOfLife")
    const ha1 = digestHa1('MD5', 'Mufasa', 'testrealm@host.com', 'CircleOfLife');
    expect(digestResponse({ algorithm: 'MD5', ha1, method: 'GET', uri: '/dir/index.html', nonce: 'dcd98b7102dd2f0e8b11d0f600bfb0c093' })).toBe(
      '1949323746fe6a43ef61f9606e7febea',
    );
  });

  it('HA1 matches the kamctl ha1/ha1b columns', () => {
    expect(digestHa1('MD5', 'alice', DOMAIN, 'pw')).toBe(computeHa1('alice', DOMAIN, 'pw'));
    expect(digestHa1('MD5', `alice@${DOMAIN}`, DOMAIN, 'pw')).toBe(computeHa1b('alice', DOMAIN, 'pw'));
  });
});

// ------------------------------------------------------------------------------------------ challenge

describe('challenge()', () => {
  it('401 with one WWW-Authenticate per algorithm, in the configured order, sharing nonce and opaque', async () => {
    const { auth } = await fixture();
    const res = auth.challenge(request(), DOMAIN, 'www');
    expect(res.status).toBe(401);
    const values = res.headerValues('www-authenticate');
    expect(values).toHaveLength(2);
    const [md5, sha] = values.map(parseAuthHeader);
    expect(md5!.scheme).toBe('Digest');
    expect(md5!.params.get('algorithm')).toBe('MD5');
    expect(sha!.params.get('algorithm')).toBe('SHA-256');
    for (const c of [md5!, sha!]) {
      expect(c.params.get('realm')).toBe(DOMAIN);
      expect(c.params.get('qop')).toBe('auth');
      expect(c.params.get('nonce')).toMatch(/^[A-Za-z0-9_-]{64}$/);
      expect(c.params.get('opaque')).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(c.params.has('stale')).toBe(false);
    }
    expect(sha!.params.get('nonce')).toBe(md5!.params.get('nonce'));
    expect(sha!.params.get('opaque')).toBe(md5!.params.get('opaque'));
    // algorithm is a token, not quoted (SIPp and old phones compare it literally)
    expect(values[0]).toContain('algorithm=MD5');
  });

  it('writes each challenge as formatAuthHeader does (realm quoted and escaped, stale and algorithm bare), with and without qop', async () => {
    for (const qop of ['auth', 'none'] as const) {
      const { auth } = await fixture({ qop });
      for (const realm of [DOMAIN, 'odd "realm" \\ here']) {
        for (const stale of [false, true]) {
          const values = auth.challenge(request(), realm, 'www', { stale }).headerValues('www-authenticate');
          expect(values).toHaveLength(2);
          for (const [i, alg] of (['MD5', 'SHA-256'] as const).entries()) {
            const p = parseAuthHeader(values[i]!).params;
            const params: Array<[string, string]> = [
              ['realm', realm],
              ['nonce', p.get('nonce')!],
            ];
            if (qop === 'auth') params.push(['qop', 'auth']);
            params.push(['opaque', p.get('opaque')!], ['algorithm', alg]);
            if (stale) params.push(['stale', 'true']);
            expect(values[i]).toBe(formatAuthHeader('Digest', params));
            expect(p.get('realm')).toBe(realm);
          }
        }
      }
    }
  });

  it('nonce and opaque have the documented format: time ‖ seq ‖ random ‖ HMAC-SHA256(secret, …) (nonces of an earlier process with the same secret stay valid)', async () => {
    const { auth, clock } = await fixture();
    const secret = Buffer.from('0123456789abcdef0123456789abcdef');
    for (let i = 0; i < 3; i++) {
      const c = challenges(auth.challenge(request(), 'Example.COM', 'www')).get('MD5')!;
      const nonce = Buffer.from(c.get('nonce')!, 'base64url');
      expect(nonce).toHaveLength(48);
      expect(nonce.readUIntBE(0, 6)).toBe(clock.t);
      const mac = createHmac('sha256', secret).update(nonce.subarray(0, 16)).update('example.com', 'latin1').digest();
      expect(nonce.subarray(16).equals(mac)).toBe(true);
      const opaque = createHmac('sha256', secret).update('opaque\u0000').update(c.get('nonce')!, 'latin1').digest().subarray(0, 12).toString('base64url');
      expect(c.get('opaque')).toBe(opaque);
      clock.t += 1234;
    }
  });

  it('accepts a nonce made outside this instance with the same secret and format, and refuses one with a MAC off by a bit', async () => {
    const { auth } = await fixture();
    const secret = Buffer.from('0123456789abcdef0123456789abcdef');
    const make = (flip: boolean): { nonce: string; opaque: string } => {
      const b = Buffer.alloc(48);
      b.writeUIntBE(T0, 0, 6);
      b.writeUIntBE(7, 6, 6);
      b.writeUInt32BE(0xdeadbeef, 12);
      createHmac('sha256', secret).update(b.subarray(0, 16)).update(DOMAIN, 'latin1').digest().copy(b, 16);
      if (flip) b[47]! ^= 1;
      const nonce = b.toString('base64url');
      return { nonce, opaque: createHmac('sha256', secret).update('opaque\u0000').update(nonce, 'latin1').digest().subarray(0, 12).toString('base64url') };
    };
    const answerWith = (n: { nonce: string; opaque: string }): SipRequest => {
      const response = digestResponse({ algorithm: 'MD5', ha1: digestHa1('MD5', 'alice', DOMAIN, 'wonderland'), method: 'REGISTER', uri: `sip:${DOMAIN}`, nonce: n.nonce, qop: 'auth', nc: '00000001', cnonce: 'abc' });
      return request({
        extra: [`Authorization: Digest username="alice", realm="${DOMAIN}", nonce="${n.nonce}", uri="sip:${DOMAIN}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc", opaque="${n.opaque}"`],
      });
    };
    const ok = await auth.verify(answerWith(make(false)), DOMAIN, 'www');
    expect(ok.ok).toBe(true);
    const bad = await auth.verify(answerWith(make(true)), DOMAIN, 'www');
    expect(bad.ok === false && bad.reason).toBe('bad');
  });

  it('honours the algorithm order of the configuration (SHA-256 first when asked)', async () => {
    const { auth } = await fixture({ algorithms: ['SHA-256', 'MD5'] });
    const algs = auth.challenge(request(), DOMAIN, 'www').headerValues('www-authenticate').map((v) => parseAuthHeader(v).params.get('algorithm'));
    expect(algs).toEqual(['SHA-256', 'MD5']);
  });

  it('407 with Proxy-Authenticate for kind proxy', async () => {
    const { auth } = await fixture();
    const res = auth.challenge(request({ method: 'INVITE', toUser: 'bob' }), DOMAIN, 'proxy');
    expect(res.status).toBe(407);
    expect(res.reason).toBe('Proxy Authentication Required');
    expect(res.headerValues('proxy-authenticate')).toHaveLength(2);
    expect(res.has('www-authenticate')).toBe(false);
  });

  it('qop none omits qop; stale adds stale=true', async () => {
    const { auth } = await fixture({ qop: 'none' });
    const plain = challenges(auth.challenge(request(), DOMAIN, 'www')).get('MD5')!;
    expect(plain.has('qop')).toBe(false);
    const stale = auth.challenge(request(), DOMAIN, 'www', { stale: true }).headerValues('www-authenticate');
    for (const v of stale) expect(v).toMatch(/, stale=true$/);
  });

  it('adds a deterministic To-tag (same for a retransmission, different for another request) and creates no state', async () => {
    const { auth } = await fixture();
    const a = request({ branch: 'z9hG4bK-retx' });
    const a2 = request({ branch: 'z9hG4bK-retx' });
    const b = request({ branch: 'z9hG4bK-other' });
    const tag = (r: SipResponse): string | undefined => r.toTag();
    expect(tag(auth.challenge(a, DOMAIN, 'www'))).toBe(statelessToTag(a));
    expect(tag(auth.challenge(a2, DOMAIN, 'www'))).toBe(tag(auth.challenge(a, DOMAIN, 'www')));
    expect(tag(auth.challenge(b, DOMAIN, 'www'))).not.toBe(tag(auth.challenge(a, DOMAIN, 'www')));
    for (let i = 0; i < 100; i++) auth.challenge(request(), DOMAIN, 'www');
    expect(auth.trackedNonces).toBe(0);
  });

  it('copies Via/From/To/Call-ID/CSeq from the request', async () => {
    const { auth } = await fixture();
    const req = request({ callId: 'xyz@h', cseq: 7 });
    const res = auth.challenge(req, DOMAIN, 'www');
    expect(res.callId()).toBe('xyz@h');
    expect(res.cseq()).toEqual({ seq: 7, method: 'REGISTER' });
    expect(res.header('via')).toBe(req.header('via'));
  });
});

// ------------------------------------------------------------------------------------------ verify

describe('verify(): round trips', () => {
  for (const algorithm of ['MD5', 'SHA-256'] as const) {
    it(`${algorithm} with qop=auth`, async () => {
      const { auth } = await fixture();
      const r1 = request();
      const first = failed(await auth.verify(r1, DOMAIN, 'www'));
      expect(first.reason).toBe('no-credentials');
      expect(first.response.status).toBe(401);
      const r2 = request({ cseq: 2, extra: [answer(first.response, 'REGISTER', { algorithm })] });
      expect(await auth.verify(r2, DOMAIN, 'www')).toEqual({ ok: true, user: 'alice', realm: DOMAIN });
    });

    it(`${algorithm} without qop (RFC 2069 phone, qop none configured)`, async () => {
      const { auth } = await fixture({ qop: 'none' });
      const chal = failed(await auth.verify(request(), DOMAIN, 'www')).response;
      const r2 = request({ extra: [answer(chal, 'REGISTER', { algorithm })] });
      expect(await auth.verify(r2, DOMAIN, 'www')).toMatchObject({ ok: true, user: 'alice' });
    });

    it(`${algorithm} for INVITE with Proxy-Authorization`, async () => {
      const { auth } = await fixture();
      const inv = request({ method: 'INVITE', toUser: 'bob' });
      const chal = failed(await auth.verify(inv, DOMAIN, 'proxy')).response;
      expect(chal.status).toBe(407);
      const inv2 = request({ method: 'INVITE', toUser: 'bob', cseq: 2, extra: [answer(chal, 'INVITE', { algorithm })] });
      expect(await auth.verify(inv2, DOMAIN, 'proxy')).toMatchObject({ ok: true, user: 'alice' });
    });
  }

  it('accepts an answer without qop to a qop=auth challenge (old phone), but only once', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const hdr = answer(chal, 'REGISTER', { qop: false });
    expect(hdr).not.toContain('qop=');
    expect((await auth.verify(request({ extra: [hdr] }), DOMAIN, 'www')).ok).toBe(true);
    const again = failed(await auth.verify(request({ extra: [hdr] }), DOMAIN, 'www'));
    expect(again.reason).toBe('replay');
    expect(challenges(again.response).get('MD5')!.get('stale')).toBe('true');
  });

  it('the method is part of the digest: an answer computed for REGISTER fails for INVITE', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request({ method: 'INVITE' }), DOMAIN, 'proxy');
    const inv = request({ method: 'INVITE', extra: [answer(chal, 'REGISTER')] });
    expect(failed(await auth.verify(inv, DOMAIN, 'proxy')).reason).toBe('bad');
  });

  it('treats a non-Digest scheme as no credentials (RFC 4475 regaut01)', async () => {
    const { auth } = await fixture();
    const r = request({ extra: ['Authorization: NoOneKnowsThisScheme opaque-data=here'] });
    const f = failed(await auth.verify(r, DOMAIN, 'www'));
    expect(f.reason).toBe('no-credentials');
    expect(f.response.status).toBe(401);
  });

  it('rejects an algorithm that was not offered with a fresh challenge', async () => {
    const { auth } = await fixture({ algorithms: ['MD5'] });
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const hdr = answer(chal, 'REGISTER').replace('algorithm=MD5', 'algorithm=SHA-512-256');
    const f = failed(await auth.verify(request({ extra: [hdr] }), DOMAIN, 'www'));
    expect(f.reason).toBe('bad');
    expect(f.response.status).toBe(401);
  });

  it('answers incomplete credentials with 400', async () => {
    const { auth } = await fixture();
    const nonce = challenges(auth.challenge(request(), DOMAIN, 'www')).get('MD5')!.get('nonce')!;
    const r = request({ extra: [`Authorization: Digest username="alice", realm="${DOMAIN}", nonce="${nonce}", uri="sip:${DOMAIN}"`] });
    const f = failed(await auth.verify(r, DOMAIN, 'www'));
    expect(f.reason).toBe('bad');
    expect(f.response.status).toBe(400);
  });

  it('rejects a wrong opaque, accepts a missing one', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    expect(failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER', { opaque: 'AAAAAAAAAAAAAAAA' })] }), DOMAIN, 'www')).reason).toBe('bad');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { opaque: null, nc: 2 })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('answers 500 (reason error) when the subscriber store fails, without throwing', async () => {
    const failing = storeWith(async () => {
      throw new StoreError('DB', 'MySQL: something odd');
    });
    const { auth } = await fixture({ subscribers: failing });
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER')] }), DOMAIN, 'www'));
    expect(f.reason).toBe('error');
    expect(f.response.status).toBe(500);
    expect(f.response.header('retry-after')).toBeUndefined();
  });

  it('answers 503 with Retry-After (reason unavailable) when the subscriber store is unavailable: unreachable, query timeout, pool queue full', async () => {
    for (const code of ['UNREACHABLE', 'BUSY'] as const) {
      const failing = storeWith(async () => {
        throw new StoreError(code, 'MySQL 127.0.0.1:3306: query timed out');
      });
      const { auth } = await fixture({ subscribers: failing });
      const chal = auth.challenge(request(), DOMAIN, 'www');
      const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER')] }), DOMAIN, 'www'));
      expect(f.reason, code).toBe('unavailable');
      expect(f.response.status, code).toBe(503);
      expect(f.response.header('retry-after'), code).toMatch(/^\d+$/);
    }
  });
});

describe('verify(): nonces', () => {
  it('expired nonce with a correct response → stale=true challenge', async () => {
    const { auth, clock } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    clock.t += 301_000;
    const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER')] }), DOMAIN, 'www'));
    expect(f.reason).toBe('stale');
    expect(f.response.status).toBe(401);
    for (const c of challenges(f.response).values()) expect(c.get('stale')).toBe('true');
    // the fresh challenge works
    const ok = await auth.verify(request({ extra: [answer(f.response, 'REGISTER')] }), DOMAIN, 'www');
    expect(ok.ok).toBe(true);
  });

  it('a nonce is accepted until the end of its lifetime', async () => {
    const { auth, clock } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    clock.t += 300_000;
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER')] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('expired nonce with a wrong password → plain challenge (not stale)', async () => {
    const { auth, clock } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    clock.t += 301_000;
    const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER', { password: 'nope' })] }), DOMAIN, 'www'));
    expect(f.reason).toBe('bad');
    expect(challenges(f.response).get('MD5')!.has('stale')).toBe(false);
  });

  it('forged nonce (tampered timestamp, wrong secret, other realm, garbage) → bad', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const nonce = challenges(chal).get('MD5')!.get('nonce')!;
    const buf = Buffer.from(nonce, 'base64url');
    buf[5] = buf[5]! ^ 1; // shift the issue time by 1 ms
    const tampered = buf.toString('base64url');

    const other = (await fixture({ secret: Buffer.from('another-secret-of-32-bytes-lengt') })).auth;
    const foreign = challenges(other.challenge(request(), DOMAIN, 'www')).get('MD5')!.get('nonce')!;
    const otherRealm = challenges(auth.challenge(request(), 'other.org', 'www')).get('MD5')!.get('nonce')!;

    for (const n of [tampered, foreign, otherRealm, 'dcd98b7102dd2f0e8b11d0f600bfb0c093', '']) {
      const hdr = answer(chal, 'REGISTER', { nonce: n, opaque: null });
      const f = failed(await auth.verify(request({ extra: [hdr] }), DOMAIN, 'www'));
      expect(f.reason).toBe('bad');
      expect(f.response.status).toBe(n === '' ? 400 : 401);
    }
  });
});

describe('verify(): replay protection', () => {
  it('a reused nc in a new request is a replay; nc+1 is accepted', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    // first request with nc=1
    expect((await auth.verify(request({ branch: 'z9hG4bK-a', cseq: 2, extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).ok).toBe(true);
    // a *new* request (new branch, e.g. a captured packet replayed with new Via) reusing nc=1
    const replay = failed(await auth.verify(request({ branch: 'z9hG4bK-b', cseq: 3, extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www'));
    expect(replay.reason).toBe('replay');
    expect(replay.response.status).toBe(401);
    expect(challenges(replay.response).get('MD5')!.get('stale')).toBe('true');
    // the legitimate UA goes on with nc=2
    expect((await auth.verify(request({ branch: 'z9hG4bK-c', cseq: 4, extra: [answer(chal, 'REGISTER', { nc: 2 })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('NOTE retransmissions: verify() itself cannot tell a retransmission from a replay, so the transaction layer must absorb them first', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const hdr = answer(chal, 'REGISTER', { nc: 1 });
    expect((await auth.verify(request({ branch: 'z9hG4bK-same', extra: [hdr] }), DOMAIN, 'www')).ok).toBe(true);
    // same bytes, same branch: if it reached verify() it would be refused
    expect(failed(await auth.verify(request({ branch: 'z9hG4bK-same', extra: [hdr] }), DOMAIN, 'www')).reason).toBe('replay');
  });

  it('accepts nc values out of order within the window, each once', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const v = async (nc: number): Promise<boolean | string> => {
      const r = await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc })] }), DOMAIN, 'www');
      return r.ok ? true : r.reason;
    };
    expect(await v(4)).toBe(true);
    expect(await v(2)).toBe(true);
    expect(await v(3)).toBe(true);
    expect(await v(3)).toBe('replay');
    expect(await v(100)).toBe(true);
    expect(await v(36)).toBe('replay'); // 64 or more below the highest: can no longer be told apart
    expect(await v(99)).toBe(true);
  });

  it('rejects nc=00000000 and malformed nc with 400', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const zero = answer(chal, 'REGISTER', { nc: 0 });
    expect(failed(await auth.verify(request({ extra: [zero] }), DOMAIN, 'www')).response.status).toBe(400);
    const bad = answer(chal, 'REGISTER').replace('nc=00000001', 'nc=1');
    expect(failed(await auth.verify(request({ extra: [bad] }), DOMAIN, 'www')).response.status).toBe(400);
  });

  it('memory stays bounded: ncWindow+100 nonces tracked in a window of ncWindow; an evicted nonce is stale, never accepted twice', async () => {
    const ncWindow = 50;
    const { auth } = await fixture({ ncWindow });
    const chals: SipResponse[] = [];
    for (let i = 0; i < ncWindow + 100; i++) {
      const chal = auth.challenge(request(), DOMAIN, 'www');
      chals.push(chal);
      expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).ok).toBe(true);
      expect(auth.trackedNonces).toBeLessThanOrEqual(ncWindow);
    }
    expect(auth.trackedNonces).toBe(ncWindow);
    // the first nonce was evicted while still within its lifetime: a replay of nc=1 is stale, and so is nc=2
    for (const nc of [1, 2]) {
      const f = failed(await auth.verify(request({ extra: [answer(chals[0]!, 'REGISTER', { nc })] }), DOMAIN, 'www'));
      expect(f.reason).toBe('stale');
      expect(challenges(f.response).get('MD5')!.get('stale')).toBe('true');
    }
    // recent nonces are still tracked: replay detected, next nc accepted
    const last = chals[chals.length - 1]!;
    expect(failed(await auth.verify(request({ extra: [answer(last, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).reason).toBe('replay');
    expect((await auth.verify(request({ extra: [answer(last, 'REGISTER', { nc: 2 })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('a nonce a phone keeps reusing goes stale once ncWindow newer nonces were issued (eviction by issue order), then its fresh challenge works', async () => {
    const ncWindow = 5;
    const { auth } = await fixture({ ncWindow });
    const chal = auth.challenge(request(), DOMAIN, 'www');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).ok).toBe(true);
    // ncWindow - 1 challenges to others, never answered: the nonce is still tracked
    for (let i = 0; i < ncWindow - 1; i++) auth.challenge(request({ fromUser: 'bob' }), DOMAIN, 'www');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 2 })] }), DOMAIN, 'www')).ok).toBe(true);
    auth.challenge(request({ fromUser: 'bob' }), DOMAIN, 'www');
    const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 3 })] }), DOMAIN, 'www'));
    expect(f.reason).toBe('stale');
    expect(challenges(f.response).get('MD5')!.get('stale')).toBe('true');
    expect((await auth.verify(request({ extra: [answer(f.response, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).ok).toBe(true);
  });
});

describe('NonceCountTracker', () => {
  const T = 10_000;
  /** a tracker started at T that has issued `n` nonces (seq 0 .. n-1) */
  const tracker = (capacity: number, n: number): NonceCountTracker => {
    const t = new NonceCountTracker(capacity, T);
    for (let i = 0; i < n; i++) expect(t.issue()).toBe(i);
    return t;
  };

  it('accepts each nc of a nonce once: replays, out-of-order nc within the 64-wide window, nc below the window', () => {
    const t = tracker(4, 1);
    expect(t.use(T, 0, 1)).toBe('ok');
    expect(t.use(T, 0, 1)).toBe('replay');
    expect(t.use(T, 0, 4)).toBe('ok');
    expect(t.use(T, 0, 2)).toBe('ok');
    expect(t.use(T, 0, 3)).toBe('ok');
    expect(t.use(T, 0, 3)).toBe('replay');
    expect(t.use(T, 0, 4)).toBe('replay');
    // 33: the window moves by 29, nc 1..4 now at bits 29..32 (across the two 32-bit words)
    expect(t.use(T, 0, 33)).toBe('ok');
    for (const nc of [1, 2, 3, 4, 33]) expect(t.use(T, 0, nc)).toBe('replay');
    expect(t.use(T, 0, 5)).toBe('ok'); // bit 28
    expect(t.use(T, 0, 32)).toBe('ok'); // bit 1
    // 67: nc 4 is at bit 63, the last one of the window; nc 3 below it
    expect(t.use(T, 0, 67)).toBe('ok');
    expect(t.use(T, 0, 4)).toBe('replay');
    expect(t.use(T, 0, 3)).toBe('replay'); // below the window: can no longer be told apart
    expect(t.use(T, 0, 6)).toBe('ok'); // bit 61
    expect(t.use(T, 0, 6)).toBe('replay');
    expect(t.use(T, 0, 35)).toBe('ok'); // bit 32 (bit 0 of the high word)
    expect(t.use(T, 0, 36)).toBe('ok'); // bit 31 (the sign bit of the low word)
    expect(t.use(T, 0, 35)).toBe('replay');
    expect(t.use(T, 0, 36)).toBe('replay');
    // a jump of 64 or more clears the window
    expect(t.use(T, 0, 200)).toBe('ok');
    expect(t.use(T, 0, 137)).toBe('ok'); // bit 63
    expect(t.use(T, 0, 136)).toBe('replay');
    expect(t.use(T, 0, 199)).toBe('ok');
    expect(t.use(T, 0, 0xffffffff)).toBe('ok'); // the largest nc
    expect(t.use(T, 0, 0xffffffff)).toBe('replay');
    expect(t.use(T, 0, 0xfffffffe)).toBe('ok');
  });

  it('an answer without qop (nc 0) is accepted once per nonce', () => {
    const t = tracker(4, 2);
    expect(t.use(T, 0, 0)).toBe('ok');
    expect(t.use(T, 0, 0)).toBe('replay');
    // after qop answers, nc 0 is one more nonce-count of the window, also accepted once
    expect(t.use(T, 1, 1)).toBe('ok');
    expect(t.use(T, 1, 0)).toBe('ok');
    expect(t.use(T, 1, 0)).toBe('replay');
  });

  it('nonces are independent of each other', () => {
    const t = tracker(4, 4);
    for (let s = 0; s < 4; s++) expect(t.use(T, s, 1)).toBe('ok');
    for (let s = 0; s < 4; s++) expect(t.use(T, s, 1)).toBe('replay');
    for (let s = 0; s < 4; s++) expect(t.use(T, s, 2)).toBe('ok');
    expect(t.size).toBe(4);
  });

  it('a nonce whose slot was taken by a newer nonce is stale, and stays so', () => {
    const t = tracker(4, 4);
    expect(t.use(T, 0, 1)).toBe('ok');
    expect(t.issue()).toBe(4);
    expect(t.use(T, 4, 1)).toBe('ok'); // slot 4 % 4 = 0
    expect(t.use(T, 0, 2)).toBe('stale');
    expect(t.use(T, 0, 1)).toBe('stale');
    expect(t.use(T, 4, 1)).toBe('replay');
    expect(t.use(T, 4, 2)).toBe('ok');
  });

  it('a nonce issued more than capacity nonces ago is stale, even never used and with its slot never reused', () => {
    const t = tracker(4, 5); // seq 0 .. 4 issued: 1 .. 4 are tracked
    expect(t.use(T, 0, 1)).toBe('stale');
    expect(t.use(T, 1, 1)).toBe('ok');
    // a used nonce goes stale the same way once 4 newer nonces were issued
    t.issue(); // seq 5
    expect(t.use(T, 1, 2)).toBe('stale');
    expect(t.use(T, 2, 1)).toBe('ok');
  });

  it('a nonce issued before the tracker started (by an earlier process) is stale', () => {
    const t = tracker(4, 2);
    expect(t.use(T - 1, 0, 1)).toBe('stale');
    expect(t.use(T - 1, 1, 1)).toBe('stale');
    expect(t.use(T, 1, 1)).toBe('ok');
  });

  it('a nonce of another instance (same secret): tracked while its seq is in range and its slot is free; a seq collision is stale', () => {
    const t = tracker(4, 2);
    // seq 7: not issued here yet; accepted and tracked like ours
    expect(t.use(T + 5, 7, 1)).toBe('ok');
    expect(t.use(T + 5, 7, 1)).toBe('replay');
    // ours with seq 3 (slot 3) comes later: the slot holds a newer seq, stale (never confused with seq 7)
    t.issue();
    t.issue(); // seq 2, 3
    expect(t.use(T, 3, 1)).toBe('stale');
    // same seq, another issue time: another nonce, which cannot be tracked next to ours
    expect(t.use(T, 1, 1)).toBe('ok');
    expect(t.use(T + 1, 1, 2)).toBe('stale');
    expect(t.use(T, 1, 2)).toBe('ok');
  });

  it('capacity 1: only the newest nonce is tracked', () => {
    const t = tracker(1, 1);
    expect(t.use(T, 0, 1)).toBe('ok');
    expect(t.use(T, 0, 1)).toBe('replay');
    expect(t.use(T, 0, 2)).toBe('ok');
    expect(t.size).toBe(1);
    t.issue(); // seq 1
    expect(t.size).toBe(0);
    expect(t.use(T, 0, 3)).toBe('stale');
    expect(t.use(T, 1, 1)).toBe('ok');
    expect(t.use(T, 1, 1)).toBe('replay');
    expect(t.use(T, 0, 3)).toBe('stale');
    expect(() => new NonceCountTracker(0, T)).toThrow(RangeError);
    expect(() => new NonceCountTracker(1.5, T)).toThrow(RangeError);
  });

  it('memory does not grow with nonces: no per-nonce objects, size bounded by capacity, the newest capacity nonces all tracked', () => {
    const capacity = 64;
    const t = new NonceCountTracker(capacity, T);
    const fields = (): string[] => Object.entries(t).map(([k, v]) => `${k}:${ArrayBuffer.isView(v) ? `${v.constructor.name}(${v.byteLength})` : typeof v}`);
    const before = fields();
    for (let i = 0; i < 20 * capacity; i++) {
      const seq = t.issue();
      expect(t.use(T, seq, 1)).toBe('ok');
      expect(t.size).toBeLessThanOrEqual(capacity);
    }
    expect(t.size).toBe(capacity);
    // the same fields, each a number or a typed array of the same length as before any nonce
    expect(fields()).toEqual(before);
    for (const f of before) expect(f).toMatch(/^\w+:(number|\w+Array\(\d+\))$/);
    const newest = 20 * capacity - 1;
    for (let s = newest - capacity + 1; s <= newest; s++) expect(t.use(T, s, 1)).toBe('replay');
    expect(t.use(T, newest - capacity, 2)).toBe('stale');
  });
});

describe('verify(): users and credentials', () => {
  it('user mismatch: valid credentials of bob in a request From alice → 403', async () => {
    const { auth } = await fixture();
    const inv = request({ method: 'INVITE', fromUser: 'alice', toUser: 'carol' });
    const chal = auth.challenge(inv, DOMAIN, 'proxy');
    const r = request({ method: 'INVITE', fromUser: 'alice', toUser: 'carol', extra: [answer(chal, 'INVITE', { username: 'bob', password: 'builder' })] });
    const f = failed(await auth.verify(r, DOMAIN, 'proxy'));
    expect(f.reason).toBe('user-mismatch');
    expect(f.response.status).toBe(403);
  });

  it('REGISTER checks the To user (a REGISTER on behalf of another AOR is refused)', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    // From bob (third-party registration) for To alice, authenticated as alice: allowed
    const ok = request({ fromUser: 'bob', toUser: 'alice', extra: [answer(chal, 'REGISTER', { nc: 1 })] });
    expect(await auth.verify(ok, DOMAIN, 'www')).toMatchObject({ ok: true, user: 'alice' });
    // To bob, authenticated as alice: refused
    const bad = request({ fromUser: 'alice', toUser: 'bob', extra: [answer(chal, 'REGISTER', { nc: 2 })] });
    expect(failed(await auth.verify(bad, DOMAIN, 'www')).reason).toBe('user-mismatch');
  });

  it('username user@domain is checked against ha1b (Kamailio use_domain), a plain username against ha1', async () => {
    // a store whose ha1 is useless: only the ha1b path can succeed for user@domain
    const base = new MemorySubscriberStore();
    await base.add('alice', DOMAIN, 'wonderland');
    const real = (await base.get('alice', DOMAIN))!;
    const onlyHa1b: Subscriber = { ...real, password: '', ha1: '0'.repeat(32) };
    const onlyHa1: Subscriber = { ...real, password: '', ha1b: '0'.repeat(32) };
    const storeOf = (s: Subscriber): SubscriberStore => storeWith(async (u, d) => (u === s.username && d === s.domain ? { ...s } : null));

    const a = (await fixture({ subscribers: storeOf(onlyHa1b) })).auth;
    let chal = a.challenge(request(), DOMAIN, 'www');
    expect(await a.verify(request({ extra: [answer(chal, 'REGISTER', { username: `alice@${DOMAIN}` })] }), DOMAIN, 'www')).toMatchObject({ ok: true, user: 'alice' });
    expect(failed(await a.verify(request({ extra: [answer(chal, 'REGISTER', { username: 'alice', nc: 2 })] }), DOMAIN, 'www')).reason).toBe('bad');

    const b = (await fixture({ subscribers: storeOf(onlyHa1) })).auth;
    chal = b.challenge(request(), DOMAIN, 'www');
    expect((await b.verify(request({ extra: [answer(chal, 'REGISTER', { username: 'alice' })] }), DOMAIN, 'www')).ok).toBe(true);
    expect(failed(await b.verify(request({ extra: [answer(chal, 'REGISTER', { username: `alice@${DOMAIN}`, nc: 2 })] }), DOMAIN, 'www')).reason).toBe('bad');
  });

  it('MD5 without stored ha1 falls back to the password (calculate_ha1); SHA-256 needs the password', async () => {
    const row: Subscriber = { username: 'alice', domain: DOMAIN, password: 'wonderland', ha1: '', ha1b: '' };
    const store = storeWith(async () => ({ ...row }));
    const { auth } = await fixture({ subscribers: store });
    let chal = auth.challenge(request(), DOMAIN, 'www');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { algorithm: 'MD5' })] }), DOMAIN, 'www')).ok).toBe(true);

    const noPw = storeWith(async () => ({ ...row, password: '', ha1: computeHa1('alice', DOMAIN, 'wonderland') }));
    const f2 = await fixture({ subscribers: noPw });
    chal = f2.auth.challenge(request(), DOMAIN, 'www');
    expect((await f2.auth.verify(request({ extra: [answer(chal, 'REGISTER', { algorithm: 'MD5' })] }), DOMAIN, 'www')).ok).toBe(true);
    expect(failed(await f2.auth.verify(request({ extra: [answer(chal, 'REGISTER', { algorithm: 'SHA-256', nc: 2 })] }), DOMAIN, 'www')).reason).toBe('bad');
  });

  it('a password change takes effect for the next request', async () => {
    const { auth, subs } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    await subs.setPassword('alice', DOMAIN, 'new-secret');
    expect(failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www')).reason).toBe('bad');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 2, password: 'new-secret' })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  for (const algorithm of ['MD5', 'SHA-256'] as const) {
    it(`enumeration resistance (${algorithm}): unknown user and wrong password get identical replies`, async () => {
      const { auth } = await fixture();
      const chal = auth.challenge(request({ fromUser: 'mallory' }), DOMAIN, 'www');
      const unknownReq = request({ fromUser: 'mallory', branch: 'z9hG4bK-enum', extra: [answer(chal, 'REGISTER', { algorithm, username: 'mallory', password: 'guess' })] });
      const chal2 = auth.challenge(request({ fromUser: 'mallory' }), DOMAIN, 'www');
      const wrongReq = request({ fromUser: 'mallory', branch: 'z9hG4bK-enum', extra: [answer(chal2, 'REGISTER', { algorithm, username: 'alice', password: 'guess' })] });
      const unknown = failed(await auth.verify(unknownReq, DOMAIN, 'www'));
      const wrong = failed(await auth.verify(wrongReq, DOMAIN, 'www'));
      expect(unknown.reason).toBe('bad');
      expect(wrong.reason).toBe('bad');
      expect(unknown.response.status).toBe(wrong.response.status);
      expect(unknown.response.headers.map((h) => h.name)).toEqual(wrong.response.headers.map((h) => h.name));
      expect(shape(unknown.response)).toBe(shape(wrong.response));
      // and it is a real challenge, not a tell-tale 403/404
      expect(unknown.response.status).toBe(401);
    });
  }

  it('enumeration resistance: an unknown user with a forged or expired nonce gets the same reply as a known one', async () => {
    const { auth, clock } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    clock.t += 400_000;
    const mk = (username: string): SipRequest =>
      request({ fromUser: 'x', branch: 'z9hG4bK-e2', extra: [answer(chal, 'REGISTER', { username, password: 'guess' })] });
    const a = failed(await auth.verify(mk('alice'), DOMAIN, 'www'));
    const b = failed(await auth.verify(mk('nobody'), DOMAIN, 'www'));
    expect([a.reason, b.reason]).toEqual(['bad', 'bad']);
    expect(shape(a.response)).toBe(shape(b.response));
  });
});

describe('verify(): digest uri and realms', () => {
  it('checkUri off (default): SIPp-style uri sip:<server>:<port> is accepted', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { uri: 'sip:127.0.0.1:5060' })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('checkUri on: the digest uri must match the Request-URI', async () => {
    const { auth } = await fixture({ checkUri: true });
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const f = failed(await auth.verify(request({ extra: [answer(chal, 'REGISTER', { uri: 'sip:127.0.0.1:5060' })] }), DOMAIN, 'www'));
    expect(f.reason).toBe('bad');
    expect(f.response.status).toBe(400);
    // equal per RFC 3261 §19.1.4 (host case differs) is fine
    expect((await auth.verify(request({ extra: [answer(chal, 'REGISTER', { uri: 'sip:EXAMPLE.com', nc: 2 })] }), DOMAIN, 'www')).ok).toBe(true);
  });

  it('ignores credentials for another realm (Proxy-Authorization for a downstream proxy)', async () => {
    const { auth } = await fixture();
    const inv = request({ method: 'INVITE', toUser: 'bob' });
    const chal = auth.challenge(inv, DOMAIN, 'proxy');
    const otherRealm = auth.challenge(inv, 'other.net', 'proxy');
    const foreign = answer(otherRealm, 'INVITE');
    const f = failed(await auth.verify(request({ method: 'INVITE', toUser: 'bob', extra: [foreign] }), DOMAIN, 'proxy'));
    expect(f.reason).toBe('no-credentials');
    expect(f.response.status).toBe(407);
    // ours next to the foreign one is found
    const both = request({ method: 'INVITE', toUser: 'bob', extra: [foreign, answer(chal, 'INVITE')] });
    expect((await auth.verify(both, DOMAIN, 'proxy')).ok).toBe(true);
  });

  it('kind www reads Authorization only, kind proxy Proxy-Authorization only', async () => {
    const { auth } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const asProxy = answer(chal, 'REGISTER', { header: 'Proxy-Authorization' });
    expect(failed(await auth.verify(request({ extra: [asProxy] }), DOMAIN, 'www')).reason).toBe('no-credentials');
  });
});

describe('stripCredentials()', () => {
  it('removes our realm’s Proxy-Authorization lines and keeps the others byte for byte', async () => {
    const { auth } = await fixture();
    const other = 'Proxy-Authorization: Digest username="a", realm="other.net", nonce="n", uri="sip:x", response="00"';
    const ours = `Proxy-Authorization: Digest username="alice", realm="${DOMAIN}", nonce="n", uri="sip:x", response="00"`;
    const req = request({ method: 'INVITE', extra: [ours, other, 'Authorization: Digest username="u", realm="example.com", nonce="n", uri="sip:x", response="1"'] });
    expect(req.auth('proxy-authorization')).toHaveLength(2); // populate the parsed-header cache
    expect(stripCredentials(req, DOMAIN)).toBe(1);
    expect(req.headerValues('proxy-authorization')).toEqual([other.slice('Proxy-Authorization: '.length)]);
    expect(req.auth('proxy-authorization').map((a) => a.params.get('realm'))).toEqual(['other.net']);
    expect(req.toString()).toContain(`\r\n${other}\r\n`);
    // Authorization (end-to-end, for the UAS) is not touched
    expect(req.has('authorization')).toBe(true);
    expect(auth.stripCredentials(req, DOMAIN)).toBe(0);
  });
});

describe('logging', () => {
  it('logs no password, HA1, response or Authorization value', async () => {
    const { auth, logs } = await fixture();
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const good = answer(chal, 'REGISTER', { nc: 1 });
    const bad = answer(chal, 'REGISTER', { nc: 2, password: 'oops-typo' });
    await auth.verify(request({ extra: [good] }), DOMAIN, 'www');
    await auth.verify(request({ extra: [bad] }), DOMAIN, 'www');
    expect(logs.length).toBeGreaterThan(0);
    const all = logs.join('\n');
    const response = /response="([0-9a-f]+)"/.exec(bad)![1]!;
    for (const secret of ['wonderland', 'oops-typo', computeHa1('alice', DOMAIN, 'wonderland'), computeHa1b('alice', DOMAIN, 'wonderland'), response, 'Digest ']) {
      expect(all).not.toContain(secret);
    }
  });
});

describe('verify(): cached credentials (synchronous path)', () => {
  it('with the credentials cached, verify() answers with a plain value (no Promise); a miss goes through the store; the verdicts are the same', async () => {
    const subs = new MemorySubscriberStore();
    await subs.add('alice', DOMAIN, 'wonderland');
    let gets = 0;
    const counting: SubscriberStore = {
      get: (u, d) => (gets++, subs.get(u, d)),
      add: (u, d, p) => subs.add(u, d, p),
      remove: (u, d) => subs.remove(u, d),
      setPassword: (u, d, p) => subs.setPassword(u, d, p),
      list: (d) => subs.list(d),
      close: () => subs.close(),
    };
    const clock = { t: T0 };
    const cache = new CachedSubscriberStore(counting, { ttlMs: 60_000, now: () => clock.t });
    const { auth } = await fixture({ subscribers: cache, now: () => clock.t });
    const chal = auth.challenge(request(), DOMAIN, 'www');
    const first = auth.verify(request({ extra: [answer(chal, 'REGISTER', { nc: 1 })] }), DOMAIN, 'www');
    expect(first).toBeInstanceOf(Promise); // not cached yet
    expect(await first).toMatchObject({ ok: true, user: 'alice' });
    expect(gets).toBe(1);
    const second = auth.verify(request({ cseq: 2, extra: [answer(chal, 'REGISTER', { nc: 2 })] }), DOMAIN, 'www');
    expect(second).not.toBeInstanceOf(Promise);
    expect(second).toEqual({ ok: true, user: 'alice', realm: DOMAIN });
    // a wrong password, and a replay, are refused the same way on the synchronous path
    const wrong = auth.verify(request({ cseq: 3, extra: [answer(chal, 'REGISTER', { nc: 3, password: 'nope' })] }), DOMAIN, 'www');
    expect(wrong).not.toBeInstanceOf(Promise);
    expect(wrong).toMatchObject({ ok: false, reason: 'bad' });
    const replay = auth.verify(request({ cseq: 4, extra: [answer(chal, 'REGISTER', { nc: 2 })] }), DOMAIN, 'www');
    expect(replay).toMatchObject({ ok: false, reason: 'replay' });
    // an unknown user: the cached "no such subscriber" is synchronous too, and indistinguishable from a wrong password
    const unknown1 = await auth.verify(request({ fromUser: 'mallory', toUser: 'mallory', extra: [answer(chal, 'REGISTER', { username: 'mallory', nc: 5 })] }), DOMAIN, 'www');
    expect(unknown1).toMatchObject({ ok: false, reason: 'bad' });
    const unknown2 = auth.verify(request({ fromUser: 'mallory', toUser: 'mallory', extra: [answer(chal, 'REGISTER', { username: 'mallory', nc: 6 })] }), DOMAIN, 'www');
    expect(unknown2).not.toBeInstanceOf(Promise);
    expect(unknown2).toMatchObject({ ok: false, reason: 'bad' });
    expect(gets).toBe(2);
  });
});
