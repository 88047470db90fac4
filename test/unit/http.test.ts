/** src/http.ts: the admin rules (token, Host, loopback), the AOR of DELETE /location, and the handler on a real socket. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  acceptedHosts,
  adminPolicy,
  bearerToken,
  checkAdmin,
  createHttpHandler,
  hostAllowed,
  isLoopbackHost,
  parseLocationAor,
  tokenMatches,
  type AdminPolicy,
} from '../../src/http.js';
import { httpRequest } from '../helpers/http.js';

const TOKEN = 'a3f1c2d4e5b6a7980123456789abcdef';

describe('isLoopbackHost', () => {
  it('127.0.0.0/8, ::1 in any spelling, IPv4-mapped loopback and localhost are loopback', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::0001', '::ffff:127.0.0.1', 'localhost', 'LocalHost']) expect(isLoopbackHost(h), h).toBe(true);
  });
  it('wildcards, other addresses and other names are not', () => {
    for (const h of ['0.0.0.0', '::', '1::', '::2', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', 'localhost.example', 'sipd.internal', '']) expect(isLoopbackHost(h), h).toBe(false);
  });
});

describe('adminPolicy', () => {
  it('on for a loopback endpoint with any token, generated or explicit', () => {
    expect(adminPolicy('127.0.0.1', { value: TOKEN, explicit: false })).toEqual({ on: true, token: TOKEN, allowedHosts: [] });
    expect(adminPolicy('::1', { value: TOKEN, explicit: true }, ['a:1'])).toEqual({ on: true, token: TOKEN, allowedHosts: ['a:1'] });
  });
  it('off on a non-loopback endpoint unless the token was set explicitly; off without a token', () => {
    const off = adminPolicy('0.0.0.0', { value: TOKEN, explicit: false });
    expect(off).toEqual({ on: false, reason: 'the metrics endpoint listens on 0.0.0.0, not a loopback address, and no admin.token / SIPD_ADMIN_TOKEN is set' });
    expect(adminPolicy('::', { value: TOKEN, explicit: false })).toMatchObject({ on: false, reason: expect.stringContaining('[::]') });
    expect(adminPolicy('0.0.0.0', { value: TOKEN, explicit: true })).toMatchObject({ on: true });
    expect(adminPolicy('127.0.0.1', null)).toEqual({ on: false, reason: 'no admin token' });
  });
});

describe('Host check (DNS rebinding)', () => {
  const acc = acceptedHosts('127.0.0.1', 9090, ['Sipd.Example:8443']);
  it('accepts the listen address and the loopback names at the bound port, and configured extras', () => {
    for (const h of ['127.0.0.1:9090', 'localhost:9090', 'LOCALHOST:9090', '[::1]:9090', 'sipd.example:8443']) expect(hostAllowed(h, acc), h).toBe(true);
  });
  it('refuses other names, other ports, missing ports (80), suffix tricks and garbage', () => {
    for (const h of [undefined, '', 'evil.example:9090', '127.0.0.1:9091', '127.0.0.1', 'localhost', '127.0.0.1:9090.evil.example', 'user@127.0.0.1:9090', '127.0.0.1:9090/x', '[::1]', 'sipd.example:9090'])
      expect(hostAllowed(h, acc), String(h)).toBe(false);
  });
  it('an endpoint on [::1] or a name accepts its own Host; one on port 80 accepts Host without a port', () => {
    expect(hostAllowed('[::1]:9090', acceptedHosts('::1', 9090))).toBe(true);
    expect(hostAllowed('0.0.0.0:9090', acceptedHosts('0.0.0.0', 9090))).toBe(true);
    expect(hostAllowed('localhost', acceptedHosts('127.0.0.1', 80))).toBe(true);
  });
});

describe('token', () => {
  it('bearerToken reads "Bearer TOKEN" (scheme case-insensitive), nothing else', () => {
    expect(bearerToken(`Bearer ${TOKEN}`)).toBe(TOKEN);
    expect(bearerToken(`bearer  ${TOKEN} `)).toBe(TOKEN);
    for (const h of [undefined, '', 'Bearer', 'Bearer ', `Basic ${TOKEN}`, `Bearer ${TOKEN} extra`, TOKEN]) expect(bearerToken(h), String(h)).toBeUndefined();
  });
  it('tokenMatches: equal only for the same string (prefixes, extensions and case differ)', () => {
    expect(tokenMatches(TOKEN, TOKEN)).toBe(true);
    for (const t of [TOKEN.slice(0, -1), `${TOKEN}0`, TOKEN.toUpperCase(), '', 'x']) expect(tokenMatches(t, TOKEN), t).toBe(false);
  });
});

describe('checkAdmin: off, then Host, then token', () => {
  const on: AdminPolicy = { on: true, token: TOKEN, allowedHosts: [] };
  const acc = acceptedHosts('127.0.0.1', 9090);
  const good = { host: '127.0.0.1:9090', authorization: `Bearer ${TOKEN}` };
  it('all good', () => expect(checkAdmin(on, acc, good)).toEqual({ ok: true }));
  it('off wins over everything (403)', () => {
    expect(checkAdmin({ on: false, reason: 'why' }, acc, good)).toEqual({ ok: false, status: 403, reason: 'admin-off', message: 'admin verbs are off: why' });
  });
  it('a foreign Host is refused even with the right token (403)', () => {
    expect(checkAdmin(on, acc, { ...good, host: 'evil.example:9090' })).toMatchObject({ ok: false, status: 403, reason: 'host' });
  });
  it('missing or wrong token: 401', () => {
    expect(checkAdmin(on, acc, { host: good.host })).toMatchObject({ ok: false, status: 401, reason: 'no-token' });
    expect(checkAdmin(on, acc, { host: good.host, authorization: 'Bearer nope' })).toMatchObject({ ok: false, status: 401, reason: 'bad-token' });
  });
});

describe('parseLocationAor', () => {
  it('keeps the user part as sent (case-sensitive) and lower-cases the domain; sip:/sips: and percent-encoding allowed', () => {
    expect(parseLocationAor('Alice@Example.COM')).toEqual({ aor: 'Alice@example.com' });
    expect(parseLocationAor('sip%3ABob%40Example.com')).toEqual({ aor: 'Bob@example.com' });
    expect(parseLocationAor('SIPS:carol@[2001:DB8::1]')).toEqual({ aor: 'carol@[2001:db8::1]' });
    expect(parseLocationAor('a%40b@x')).toEqual({ aor: 'a@b@x' });
  });
  it('refuses an empty or malformed AOR', () => {
    for (const s of ['', '@x', 'alice@', 'alice', 'sip:', '%E0%A4%A', 'a%20b@x', 'a%00@x', `${'a'.repeat(600)}@x`]) expect(parseLocationAor(s), s).toHaveProperty('error');
  });
});

// ------------------------------------------------------------------ the handler on a real socket

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
});

async function endpoint(admin: AdminPolicy): Promise<{ port: number; removed: string[]; warns: Array<Record<string, unknown>>; infos: Array<Record<string, unknown>> }> {
  const removed: string[] = [];
  const warns: Array<Record<string, unknown>> = [];
  const infos: Array<Record<string, unknown>> = [];
  let port = 0;
  const server = createServer(
    createHttpHandler({
      metrics: async () => ({ contentType: 'text/plain', body: 'm 1\n' }),
      health: async () => ({ ok: true, body: { status: 'ok' } }),
      removeLocation: async (aor) => {
        removed.push(aor);
        return 2;
      },
      admin,
      listen: () => ({ host: '127.0.0.1', port }),
      log: { info: (o) => infos.push(o), warn: (o) => warns.push(o) },
    }),
  );
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
  return { port, removed, warns, infos };
}

describe('createHttpHandler', () => {
  const on: AdminPolicy = { on: true, token: TOKEN, allowedHosts: [] };

  it('/metrics and /healthz are open; unknown paths and other verbs on /location are 404', async () => {
    const e = await endpoint(on);
    expect(await httpRequest(e.port, '/metrics')).toMatchObject({ status: 200, body: 'm 1\n' });
    expect(await httpRequest(e.port, '/healthz')).toMatchObject({ status: 200, body: '{"status":"ok"}' });
    expect((await httpRequest(e.port, '/nope')).status).toBe(404);
    expect((await httpRequest(e.port, '/location/a@b', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
    expect(e.removed).toEqual([]);
  });

  it('a refused DELETE has no side effect and is logged once at warn, without the token', async () => {
    const e = await endpoint(on);
    const wrong = `${TOKEN.slice(0, -1)}0`;
    const r = await httpRequest(e.port, '/location/a@b', { method: 'DELETE', headers: { authorization: `Bearer ${wrong}` } });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expect(JSON.parse(r.body)).toEqual({ error: 'wrong admin token' });
    const h = await httpRequest(e.port, '/location/a@b', { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}`, host: `evil.example:${e.port}` } });
    expect(h.status).toBe(403);
    expect(e.removed).toEqual([]);
    expect(e.warns.map((w) => w.reason)).toEqual(['bad-token', 'host']);
    expect(JSON.stringify(e.warns)).not.toContain(wrong);
    expect(JSON.stringify(e.warns)).not.toContain(TOKEN);
    expect(e.warns[1]!.host).toBe(`evil.example:${e.port}`);
  });

  it('admin off: 403 with the reason, nothing removed', async () => {
    const e = await endpoint({ on: false, reason: 'because' });
    const r = await httpRequest(e.port, '/location/a@b', { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toEqual({ error: 'admin verbs are off: because' });
    expect(e.removed).toEqual([]);
  });

  it('an accepted DELETE removes the normalised AOR; an empty one is 400', async () => {
    const e = await endpoint(on);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const r = await httpRequest(e.port, '/location/Alice@Example.COM?x=1', { method: 'DELETE', headers: auth });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ aor: 'Alice@example.com', removed: 2 });
    expect((await httpRequest(e.port, '/location/', { method: 'DELETE', headers: auth })).status).toBe(400);
    expect(e.removed).toEqual(['Alice@example.com']);
    expect(e.infos).toEqual([{ aor: 'Alice@example.com', removed: 2 }]);
  });
});
