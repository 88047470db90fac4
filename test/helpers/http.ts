/** HTTP helpers for tests against sipd's metrics/admin endpoint, and a Prometheus text reader. */
import http from 'node:http';

export interface HttpReply {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/**
 * One HTTP request with full control of the headers (Host included, which fetch does not allow),
 * bounded by `timeoutMs`.
 */
export function httpRequest(
  port: number,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; host?: string; timeoutMs?: number } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: opts.host ?? '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers, timeout: opts.timeoutMs ?? 10_000, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`HTTP ${opts.method ?? 'GET'} ${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Value of one sample (`name{labels}` exactly as prom-client prints it, or a bare name); 0 when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const kv of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) got[kv[1]!] = kv[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return 0;
}

/** The distinct values of label `label` over every sample of family `name`. */
export function labelValues(text: string, name: string, label: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)\{([^}]*)\} \S+$/.exec(line);
    if (!m || m[1] !== name) continue;
    for (const kv of m[2]!.matchAll(/(\w+)="([^"]*)"/g)) if (kv[1] === label) out.add(kv[2]!);
  }
  return out;
}

/** Sum of every sample of a family (all label sets). */
export function total(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) sum += Number(m[2]);
  }
  return sum;
}
