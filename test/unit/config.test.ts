import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadTlsFiles, parseDbUrl, parseListen } from '../../src/config.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sipd-config-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig defaults', () => {
  const c = loadConfig({ env: {} });

  it('reads config/default.yaml from the package, not the cwd', () => {
    expect(c.listen).toEqual([
      { transport: 'udp', host: '127.0.0.1', port: 5060 },
      { transport: 'tcp', host: '127.0.0.1', port: 5060 },
    ]);
    expect(c.advertise).toBeNull();
    expect(c.domains).toEqual(['localhost', '127.0.0.1']);
    expect(c.db).toEqual({ kind: 'sqlite', path: './data/sipd.sqlite' });
    expect(c.metrics).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(c.log_level).toBe('info');
    expect(c.shutdown_grace_ms).toBe(5000);
  });

  it('has the documented limits, timers, auth, registrar, location, flood and scanner defaults', () => {
    expect(c.limits).toEqual({
      max_message_size: 65536,
      max_headers: 256,
      max_header_line: 8192,
      max_vias: 70,
      tcp_max_connections: 1000,
      tcp_max_per_ip: 100,
      tcp_idle_timeout_ms: 120000,
      tcp_msg_timeout_ms: 10000,
      tcp_max_buffer: 131072,
      max_transactions: 100000,
    });
    expect(c.timers).toEqual({ t1_ms: 500, t2_ms: 4000, t4_ms: 5000, timer_c_ms: 180000, trying_ms: 200 });
    expect(c.auth).toEqual({
      enabled: true,
      algorithms: ['MD5'],
      qop: 'auth',
      nonce_lifetime_s: 300,
      secret: null,
      check_uri: false,
      credential_cache_ttl_ms: 2000,
      trusted_ips: [],
      nc_window: 100000,
    });
    expect(c.registrar).toEqual({ min_expires: 60, default_expires: 3600, max_expires: 3600, max_contacts: 10, nat_received: true });
    expect(c.location).toEqual({ db_mode: 'write-back', expire_interval_s: 10, flush_interval_ms: 1000, retry_max_ms: 10000, final_flush_ms: 3000 });
    expect(c.db_pool).toEqual({ connections: 10, queue_limit: 1000, query_timeout_ms: 2000 });
    expect(c.flood).toEqual({ enabled: true, window_ms: 2000, max_requests: 60, ban_s: 300, exempt: ['127.0.0.1', '::1'], max_sources: 100000 });
    expect(c.scanners).toEqual({
      enabled: true,
      user_agents: ['friendly-scanner', 'sipvicious', 'sipcli', 'VaxSIPUserAgent', 'sundayddr', 'iWar', 'sip-scan'],
    });
  });

  it('UDP socket buffers default to 4 MiB each', () => {
    expect(c.udp).toEqual({ recv_buffer_bytes: 4194304, send_buffer_bytes: 4194304 });
  });

  it('does not depend on the working directory', () => {
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      expect(loadConfig({ env: {} }).limits.max_vias).toBe(70);
    } finally {
      process.chdir(cwd);
    }
  });
});

describe('loadConfig layering', () => {
  it('a --config file overrides single keys and keeps the other defaults', () => {
    const f = file(
      'override.yaml',
      `registrar:\n  min_expires: 30\nlisten: ["udp:[::1]:5070"]\nlocation:\n  db_mode: db-only\nauth:\n  trusted_ips: [10.0.0.0/8, "2001:db8::/32", 192.0.2.1]\nmetrics: off\n`,
    );
    const c = loadConfig({ file: f, env: {} });
    expect(c.registrar.min_expires).toBe(30);
    expect(c.registrar.max_expires).toBe(3600);
    expect(c.listen).toEqual([{ transport: 'udp', host: '::1', port: 5070 }]);
    expect(c.location.db_mode).toBe('db-only');
    expect(c.auth.trusted_ips).toEqual(['10.0.0.0/8', '2001:db8::/32', '192.0.2.1']);
    expect(c.auth.algorithms).toEqual(['MD5']);
    expect(c.metrics).toBeNull();
  });

  it('an empty config file is allowed', () => {
    expect(loadConfig({ file: file('empty.yaml', ''), env: {} }).log_level).toBe('info');
  });

  it('environment variables override the file', () => {
    const f = file('f.yaml', 'db: sqlite:/from/file.sqlite\nlog_level: debug\ndomains: [file.example]\n');
    const c = loadConfig({
      file: f,
      env: {
        SIPD_LISTEN: 'udp:0.0.0.0:5080, tcp:[::1]:5081',
        SIPD_DB: 'mysql://sip:p%40ss@db.example.com:3307/kamailio',
        SIPD_DOMAINS: 'Example.COM,sip.example.org',
        SIPD_METRICS: '0.0.0.0:9100',
        SIPD_LOG_LEVEL: 'WARN',
      },
    });
    expect(c.listen).toEqual([
      { transport: 'udp', host: '0.0.0.0', port: 5080 },
      { transport: 'tcp', host: '::1', port: 5081 },
    ]);
    expect(c.db).toEqual({ kind: 'mysql', host: 'db.example.com', port: 3307, user: 'sip', password: 'p@ss', database: 'kamailio' });
    expect(c.domains).toEqual(['example.com', 'sip.example.org']);
    expect(c.metrics).toEqual({ host: '0.0.0.0', port: 9100 });
    expect(c.log_level).toBe('warn');
  });

  it('SIPD_METRICS empty or off disables metrics', () => {
    expect(loadConfig({ env: { SIPD_METRICS: '' } }).metrics).toBeNull();
    expect(loadConfig({ env: { SIPD_METRICS: 'off' } }).metrics).toBeNull();
  });

  it('a different defaults file can be given', () => {
    const d = file('defaults.yaml', 'log_level: error\n');
    // Defaults file alone is incomplete: every missing key is reported by path.
    expect(errorOf(() => loadConfig({ defaultsFile: d, env: {} })).message).toMatch(/^config: listen: expected array, got nothing/);
  });
});

describe('loadConfig errors: one line naming the key', () => {
  it('wrong type', () => {
    const e = errorOf(() => loadConfig({ file: file('bad1.yaml', 'registrar:\n  min_expires: abc\n'), env: {} }));
    expect(e.message).toMatch(/^config: registrar\.min_expires: expected number, got "abc"/);
    expect(e.path).toBe('registrar.min_expires');
    expect(e.message).not.toContain('\n');
  });

  it('unknown key (typo) is rejected', () => {
    const e = errorOf(() => loadConfig({ file: file('bad2.yaml', 'registar:\n  min_expires: 30\n'), env: {} }));
    expect(e.message).toMatch(/^config: registar: unknown key \(in .*bad2\.yaml\)$/);
  });

  it('nested unknown key', () => {
    const e = errorOf(() => loadConfig({ file: file('bad3.yaml', 'limits:\n  max_vias: 10\n  max_via: 5\n'), env: {} }));
    expect(e.message).toMatch(/^config: limits\.max_via: unknown key \(in .*bad3\.yaml\)$/);
  });

  it('bad enum value', () => {
    const e = errorOf(() => loadConfig({ file: file('bad4.yaml', 'location:\n  db_mode: sometimes\n'), env: {} }));
    expect(e.message).toMatch(/^config: location\.db_mode: expected one of memory, write-back, write-through, db-only, got "sometimes"/);
  });

  it('out of range and cross-field checks', () => {
    expect(errorOf(() => loadConfig({ file: file('bad5.yaml', 'flood:\n  max_requests: -1\n'), env: {} })).message).toMatch(
      /^config: flood\.max_requests: must be >= 0, got -1/,
    );
    expect(
      errorOf(() => loadConfig({ file: file('bad6.yaml', 'registrar:\n  min_expires: 7200\n'), env: {} })).message,
    ).toMatch(/^config: registrar\.min_expires: must be <= registrar\.max_expires/);
    expect(errorOf(() => loadConfig({ file: file('bad7.yaml', 'auth:\n  trusted_ips: [10.0.0.0/33]\n'), env: {} })).message).toMatch(
      /^config: auth\.trusted_ips\[0\]: expected an IP or CIDR/,
    );
    expect(errorOf(() => loadConfig({ file: file('bad8.yaml', 'flood:\n  exempt: [127.0.0.1, localhost]\n'), env: {} })).message).toMatch(
      /^config: flood\.exempt\[1\]: expected an IP or CIDR/,
    );
    expect(errorOf(() => loadConfig({ file: file('bad9.yaml', 'flood:\n  ban_s: 0\n'), env: {} })).message).toMatch(/^config: flood\.ban_s: must be >= 1, got 0/);
    expect(errorOf(() => loadConfig({ file: file('bad10.yaml', 'scanners:\n  user_agents: [""]\n'), env: {} })).message).toMatch(
      /^config: scanners\.user_agents\[0\]: /,
    );
  });

  it('db_pool and the write-back bounds are checked like the rest', () => {
    expect(errorOf(() => loadConfig({ file: file('bad8.yaml', 'db_pool:\n  query_timeout_ms: 0\n'), env: {} })).message).toMatch(
      /^config: db_pool\.query_timeout_ms: must be >= 1, got 0/,
    );
    expect(errorOf(() => loadConfig({ file: file('bad9.yaml', 'db_pool:\n  queue: 5\n'), env: {} })).message).toMatch(/^config: db_pool\.queue: unknown key/);
    expect(errorOf(() => loadConfig({ file: file('bad10.yaml', 'location:\n  final_flush_ms: -1\n'), env: {} })).message).toMatch(
      /^config: location\.final_flush_ms: must be >= 0, got -1/,
    );
    const c = loadConfig({ file: file('pool.yaml', 'db_pool:\n  connections: 2\n  queue_limit: 3\n  query_timeout_ms: 400\nlocation:\n  final_flush_ms: 0\n'), env: {} });
    expect(c.db_pool).toEqual({ connections: 2, queue_limit: 3, query_timeout_ms: 400 });
    expect(c.location.final_flush_ms).toBe(0);
  });

  it('bad env values name the key and the variable', () => {
    expect(errorOf(() => loadConfig({ env: { SIPD_LISTEN: 'udp:127.0.0.1:5060,sctp:1.2.3.4:5060' } })).message).toBe(
      'config: listen[1]: expected udp|tcp|tls|ws|wss:HOST:PORT, got "sctp:1.2.3.4:5060" (from SIPD_LISTEN)',
    );
    expect(errorOf(() => loadConfig({ env: { SIPD_DB: 'postgres://x' } })).message).toMatch(/^config: db: .*\(from SIPD_DB\)$/);
    expect(errorOf(() => loadConfig({ env: { SIPD_METRICS: 'localhost' } })).message).toMatch(/^config: metrics: expected HOST:PORT/);
    expect(errorOf(() => loadConfig({ env: { SIPD_LISTEN: '' } })).message).toMatch(/^config: listen: expected at least 1 item/);
  });

  it('missing file and invalid YAML', () => {
    expect(errorOf(() => loadConfig({ file: join(dir, 'nope.yaml'), env: {} })).message).toMatch(/^config: cannot read .*nope\.yaml: ENOENT$/);
    const e = errorOf(() => loadConfig({ file: file('broken.yaml', 'listen: [udp:1.2.3.4:5060\n'), env: {} }));
    expect(e.message).toMatch(/broken\.yaml: invalid YAML/);
    expect(e.message).not.toContain('\n');
    expect(errorOf(() => loadConfig({ file: file('list.yaml', '- a\n- b\n'), env: {} })).message).toMatch(/expected a mapping/);
  });
});

describe('udp buffer settings', () => {
  it('a file sets them; 0 keeps the OS default; the env overrides the file', () => {
    const f = file('udp.yaml', 'udp:\n  recv_buffer_bytes: 0\n  send_buffer_bytes: 262144\n');
    expect(loadConfig({ file: f, env: {} }).udp).toEqual({ recv_buffer_bytes: 0, send_buffer_bytes: 262144 });
    expect(loadConfig({ file: f, env: { SIPD_UDP_RECV_BUFFER_BYTES: ' 8388608 ' } }).udp).toEqual({ recv_buffer_bytes: 8388608, send_buffer_bytes: 262144 });
    expect(loadConfig({ env: { SIPD_UDP_SEND_BUFFER_BYTES: '1048576' } }).udp).toEqual({ recv_buffer_bytes: 4194304, send_buffer_bytes: 1048576 });
    // empty: unset
    expect(loadConfig({ env: { SIPD_UDP_RECV_BUFFER_BYTES: '' } }).udp.recv_buffer_bytes).toBe(4194304);
  });

  it('negative, fractional, too large, text and unknown keys are rejected naming the key', () => {
    const bad = (yaml: string): string => errorOf(() => loadConfig({ file: file('udp-bad.yaml', yaml), env: {} })).message;
    expect(bad('udp:\n  recv_buffer_bytes: -1\n')).toMatch(/^config: udp\.recv_buffer_bytes: must be >= 0, got -1/);
    expect(bad('udp:\n  send_buffer_bytes: 1.5\n')).toMatch(/^config: udp\.send_buffer_bytes: /);
    expect(bad('udp:\n  recv_buffer_bytes: 2147483648\n')).toMatch(/^config: udp\.recv_buffer_bytes: must be <= 1073741824, got 2147483648/);
    expect(bad('udp:\n  recv_buffer_bytes: 4MB\n')).toMatch(/^config: udp\.recv_buffer_bytes: expected number, got "4MB"/);
    expect(bad('udp:\n  rcvbuf: 1\n')).toBe('config: udp.rcvbuf: unknown key (in ' + join(dir, 'udp-bad.yaml') + ')');
  });

  it('a bad environment value names the variable', () => {
    expect(errorOf(() => loadConfig({ env: { SIPD_UDP_RECV_BUFFER_BYTES: '4M' } })).message).toBe(
      'config: udp.recv_buffer_bytes: expected number, got "4M" (from SIPD_UDP_RECV_BUFFER_BYTES)',
    );
    expect(errorOf(() => loadConfig({ env: { SIPD_UDP_SEND_BUFFER_BYTES: '-5' } })).message).toMatch(/^config: udp\.send_buffer_bytes: expected number, got "-5" \(from SIPD_UDP_SEND_BUFFER_BYTES\)$/);
  });
});

describe('warmup settings', () => {
  it('default to 100 REGISTERs and 500 calls within 1000 ms; a file sets them, 0 allowed (off)', () => {
    expect(loadConfig({ env: {} }).warmup).toEqual({ registers: 200, calls: 1000, max_ms: 2500 });
    const f = file('warmup.yaml', 'warmup:\n  calls: 0\n');
    expect(loadConfig({ file: f, env: {} }).warmup).toEqual({ registers: 200, calls: 0, max_ms: 2500 });
  });

  it('negative, fractional, too large and unknown keys are rejected naming the key', () => {
    const bad = (yaml: string): string => errorOf(() => loadConfig({ file: file('warmup-bad.yaml', yaml), env: {} })).message;
    expect(bad('warmup:\n  calls: -1\n')).toMatch(/^config: warmup\.calls: must be >= 0, got -1/);
    expect(bad('warmup:\n  max_ms: 2.5\n')).toMatch(/^config: warmup\.max_ms: /);
    expect(bad('warmup:\n  registers: 1000000\n')).toMatch(/^config: warmup\.registers: must be <= 100000, got 1000000/);
    expect(bad('warmup:\n  seconds: 1\n')).toBe('config: warmup.seconds: unknown key (in ' + join(dir, 'warmup-bad.yaml') + ')');
  });
});

describe('parseListen', () => {
  it('parses IPv4, IPv6 in brackets and host names', () => {
    expect(parseListen('udp:127.0.0.1:5060')).toEqual({ transport: 'udp', host: '127.0.0.1', port: 5060 });
    expect(parseListen('TCP:[2001:db8::1]:5061')).toEqual({ transport: 'tcp', host: '2001:db8::1', port: 5061 });
    expect(parseListen('tcp:sip.example.com:5060')).toEqual({ transport: 'tcp', host: 'sip.example.com', port: 5060 });
  });

  it('parses tls, ws and wss entries; their port defaults to 5061, 80, 443', () => {
    expect(parseListen('tls:1.2.3.4:5061')).toEqual({ transport: 'tls', host: '1.2.3.4', port: 5061 });
    expect(parseListen('TLS:sip.example.com')).toEqual({ transport: 'tls', host: 'sip.example.com', port: 5061 });
    expect(parseListen('tls:[2001:db8::1]')).toEqual({ transport: 'tls', host: '2001:db8::1', port: 5061 });
    expect(parseListen('ws:127.0.0.1:8080')).toEqual({ transport: 'ws', host: '127.0.0.1', port: 8080 });
    expect(parseListen('ws:0.0.0.0')).toEqual({ transport: 'ws', host: '0.0.0.0', port: 80 });
    expect(parseListen('wss:[::1]:8443')).toEqual({ transport: 'wss', host: '::1', port: 8443 });
    expect(parseListen('wss:example.com')).toEqual({ transport: 'wss', host: 'example.com', port: 443 });
  });

  it('a tls listen entry is valid configuration (whether the build serves it is checked at start)', () => {
    // (merge: a tls listener needs tls.cert and tls.key, i10-tls; the files are read at start, not here)
    const c = loadConfig({ env: { SIPD_LISTEN: 'udp:127.0.0.1:5060,tls:127.0.0.1', SIPD_TLS_CERT: '/x/cert.pem', SIPD_TLS_KEY: '/x/key.pem' } });
    expect(c.listen).toEqual([
      { transport: 'udp', host: '127.0.0.1', port: 5060 },
      { transport: 'tls', host: '127.0.0.1', port: 5061 },
    ]);
  });

  it.each(['udp:127.0.0.1', 'tcp:sip.example.com', 'tls:1.2.3.4:0', 'tls:[nothex]', 'wss:::1', 'sctp:1.2.3.4:5060', 'udp:::1:5060', 'udp:[nothex]:5060', 'udp:1.2.3.4:0', 'udp:1.2.3.4:70000', ''])(
    'rejects %j',
    (s) => {
      expect(() => parseListen(s)).toThrow();
    },
  );
});

describe('parseDbUrl', () => {
  it('parses sqlite paths', () => {
    expect(parseDbUrl('sqlite:./data/sipd.sqlite')).toEqual({ kind: 'sqlite', path: './data/sipd.sqlite' });
    expect(parseDbUrl('sqlite:/var/lib/sipd/db.sqlite')).toEqual({ kind: 'sqlite', path: '/var/lib/sipd/db.sqlite' });
  });

  it('parses MySQL URLs with encoded credentials and a default port', () => {
    expect(parseDbUrl('mysql://kamailio:kamailiorw@127.0.0.1:3306/kamailio')).toEqual({
      kind: 'mysql',
      host: '127.0.0.1',
      port: 3306,
      user: 'kamailio',
      password: 'kamailiorw',
      database: 'kamailio',
    });
    expect(parseDbUrl('mysql://root@[::1]/sipd')).toEqual({ kind: 'mysql', host: '::1', port: 3306, user: 'root', password: '', database: 'sipd' });
    expect(parseDbUrl('mysql://u:a%2Fb%3Ac@h:1/d')).toMatchObject({ password: 'a/b:c' });
  });

  it.each(['sqlite:', 'mysql://127.0.0.1/db', 'mysql://u@h:1/', 'postgres://u@h/db', 'data.sqlite'])('rejects %j', (s) => {
    expect(() => parseDbUrl(s)).toThrow();
  });
});

describe('tls settings', () => {
  const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

  it('defaults: no certificate, verify the server, not the client, TLS 1.2 at least', () => {
    expect(loadConfig({ env: {} }).tls).toEqual({
      cert: null,
      key: null,
      ca: null,
      verify_client: false,
      verify_server: true,
      min_version: 'TLSv1.2',
      ciphers: null,
      handshake_timeout_ms: 5000,
    });
  });

  it('tls:HOST:PORT listens; SIPD_TLS_CERT / SIPD_TLS_KEY override the file', () => {
    expect(parseListen('tls:0.0.0.0:5061')).toEqual({ transport: 'tls', host: '0.0.0.0', port: 5061 });
    const f = file('tls.yaml', 'tls:\n  cert: /from/file.crt\n  key: /from/file.key\n  min_version: TLSv1.3\n');
    const c = loadConfig({ file: f, env: { SIPD_LISTEN: 'tls:127.0.0.1:5061', SIPD_TLS_CERT: '/env/cert.pem', SIPD_TLS_KEY: '/env/key.pem' } });
    expect(c.listen).toEqual([{ transport: 'tls', host: '127.0.0.1', port: 5061 }]);
    expect(c.tls).toMatchObject({ cert: '/env/cert.pem', key: '/env/key.pem', min_version: 'TLSv1.3' });
  });

  it('a tls listener without a certificate or key is one error naming the key', () => {
    expect(errorOf(() => loadConfig({ env: { SIPD_LISTEN: 'tls:127.0.0.1:5061' } })).message).toBe(
      'config: tls.cert: required for the tls listener (set tls.cert or SIPD_TLS_CERT) (+1 more problem)',
    );
    expect(errorOf(() => loadConfig({ env: { SIPD_LISTEN: 'tls:127.0.0.1:5061', SIPD_TLS_CERT: '/x.pem' } })).message).toBe(
      'config: tls.key: required for the tls listener (set tls.key or SIPD_TLS_KEY)',
    );
    // a wss: listener uses the same certificate
    expect(errorOf(() => loadConfig({ env: { SIPD_LISTEN: 'udp:127.0.0.1:5060,wss:127.0.0.1:8443', SIPD_TLS_CERT: '/x.pem' } })).message).toBe(
      'config: tls.key: required for the wss listener (set tls.key or SIPD_TLS_KEY)',
    );
    expect(errorOf(() => loadConfig({ env: {}, file: file('tlsv.yaml', 'tls:\n  min_version: TLSv1.1\n') })).message).toMatch(/^config: tls\.min_version: expected one of TLSv1\.2, TLSv1\.3/);
  });

  it('loadTlsFiles: a missing, unreadable or non-PEM file is one line naming the key and the path', () => {
    const base = loadConfig({ env: {} }).tls;
    const cert = file('c.pem', PEM);
    const key = file('k.pem', '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n');
    expect(loadTlsFiles({ ...base, cert, key })).toEqual({ cert: PEM, key: expect.stringContaining('PRIVATE KEY') });
    expect(loadTlsFiles({ ...base, cert, key, ca: cert })).toMatchObject({ ca: PEM });
    const missing = join(dir, 'nope.pem');
    expect(errorOf(() => loadTlsFiles({ ...base, cert: missing, key })).message).toBe(`config: tls.cert: ${missing}: no such file`);
    expect(errorOf(() => loadTlsFiles({ ...base, cert, key: dir })).message).toBe(`config: tls.key: ${dir}: not a regular file`);
    expect(errorOf(() => loadTlsFiles({ ...base, cert: file('t.txt', 'hello'), key })).message).toMatch(/^config: tls\.cert: .*t\.txt: not a PEM file$/);
  });
});

describe('websocket settings', () => {
  it('parses ws: and wss: listen entries', () => {
    expect(parseListen('ws:127.0.0.1:8080')).toEqual({ transport: 'ws', host: '127.0.0.1', port: 8080 });
    expect(parseListen('WSS:[::1]:8443')).toEqual({ transport: 'wss', host: '::1', port: 8443 });
    expect(parseListen('wss:127.0.0.1')).toEqual({ transport: 'wss', host: '127.0.0.1', port: 443 });
  });

  it('has defaults and validates the ws block', () => {
    expect(loadConfig({ env: {} }).ws).toEqual({ origins: [], path: null, ping_interval_ms: 30000, max_connections: 1000, max_per_ip: 100, handshake_timeout_ms: 10000 });
    const f = file('ws.yaml', 'ws:\n  origins: ["https://phone.example.com/", "http://127.0.0.1:8080"]\n  path: /ws\n  ping_interval_ms: 0\n');
    expect(loadConfig({ file: f, env: {} }).ws).toMatchObject({ origins: ['https://phone.example.com', 'http://127.0.0.1:8080'], path: '/ws', ping_interval_ms: 0 });
    const bad = (yaml: string): string => errorOf(() => loadConfig({ file: file('ws-bad.yaml', yaml), env: {} })).message;
    expect(bad('ws:\n  origins: [phone.example.com]\n')).toMatch(/^config: ws\.origins\[0\]: expected scheme:\/\/host\[:port\]/);
    expect(bad('ws:\n  path: ws\n')).toMatch(/^config: ws\.path: expected a path starting with \//);
    expect(bad('ws:\n  max_per_ip: 0\n')).toMatch(/^config: ws\.max_per_ip: /);
    expect(bad('ws:\n  bogus: 1\n')).toMatch(/^config: ws/);
  });
});
