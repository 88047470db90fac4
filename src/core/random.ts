/**
 * Pooled randomness: one `fill` call (randomFillSync in src/server.ts; injected, so tests can make it
 * deterministic) of `size` bytes serves many tags, branches and nonces, instead of a native
 * randomBytes call and Buffer per value. Each byte is handed out once; the pool is refilled when used up.
 */
export class RandomPool {
  private readonly pool: Buffer;
  private off: number;

  constructor(
    private readonly fill: (buf: Buffer) => void,
    size = 4096,
  ) {
    this.pool = Buffer.alloc(Math.max(64, size));
    this.off = this.pool.length;
  }

  /** offset of `n` fresh bytes in the pool (n <= pool size). */
  private take(n: number): number {
    if (this.off + n > this.pool.length) {
      this.fill(this.pool);
      this.off = 0;
    }
    const at = this.off;
    this.off += n;
    return at;
  }

  /** `n` random bytes in a Buffer of their own. */
  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    if (n > this.pool.length) {
      this.fill(out);
      return out;
    }
    const at = this.take(n);
    this.pool.copy(out, 0, at, at + n);
    return out;
  }

  /** `n` random bytes as 2n hex digits. */
  hex(n: number): string {
    if (n > this.pool.length) return this.bytes(n).toString('hex');
    const at = this.take(n);
    return this.pool.toString('hex', at, at + n);
  }

  /** `n` random bytes, base64url. */
  base64url(n: number): string {
    if (n > this.pool.length) return this.bytes(n).toString('base64url');
    const at = this.take(n);
    return this.pool.toString('base64url', at, at + n);
  }
}
