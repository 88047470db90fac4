/**
 * The core's answer to a store that is unavailable for now (StoreError UNREACHABLE or BUSY: the
 * database is down, a query timed out, the connection pool's queue is full): 503 Service Unavailable
 * with Retry-After (RFC 3261 §21.5.4), so phones retry later instead of treating it as a failure of
 * their request (500).
 */
export { isStoreUnavailable } from '../store/types.js';

/** Retry-After (seconds) of the 503 sent while a store is unavailable. */
export const STORE_RETRY_AFTER_S = 5;

export const retryAfterHeader = (): readonly [string, string] => ['Retry-After', String(STORE_RETRY_AFTER_S)];
