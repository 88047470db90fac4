/**
 * The response side of the routing pipeline (issue 10): what Kamailio calls `onreply_route` and
 * `failure_route`, as ordered lists of steps given to the Proxy at construction (composition root).
 *
 * - Reply steps run, in order, for every response received on a branch (100 included), before the
 *   proxy acts on it: they may read it, edit its headers on the way through (the edit is what goes
 *   upstream, and what the response context keeps as that branch's final), or drop a provisional
 *   (101–199). A final response cannot be dropped: the response context needs it (a `drop` for a
 *   final is ignored). Responses sipd makes itself (408 after Timer B/C, 503 for a transport error or
 *   no route) were not received: no reply step sees them.
 * - Failure steps run, in order, when every branch has ended and the best final response (§16.7
 *   step 6) is a failure (>= 300), before it is forwarded upstream. The first step that answers
 *   `retry` with targets wins: they are forked like the request's own targets (q-value groups) in
 *   the same response context, and when they fail too the failure steps are asked again (bounded by
 *   MAX_FAILURE_ROUNDS). This is serial failover. `forward` lets the next step look; after the last,
 *   the response goes upstream as it would have without steps. Not run after a CANCEL from upstream
 *   (the caller gave up: it gets its 487) or when a 2xx was already forwarded.
 *
 * With no steps (the default) the proxy behaves exactly as before: nothing is awaited, nothing is
 * copied. A step that throws (or a failure step that rejects) counts as `forward` and is logged at
 * debug: no exception from a step reaches the proxy's callers or the event loop.
 */
import type { SipRequest, SipResponse } from '../sip/index.js';
import type { Target } from '../transport/types.js';
import type { ForwardTarget } from './proxy.js';

/** One branch of a forwarded request, as the proxy sent it. */
export interface BranchInfo {
  /** 0, 1, 2 ... over every branch of the response context (all q-groups and failure rounds). */
  readonly index: number;
  /** the destination the routing policy (or a failure step) asked for. */
  readonly target: ForwardTarget;
  /** where the branch was sent. */
  readonly sentTo: Target;
  /** the request as sent on this branch (Request-URI, Route, Record-Route, Max-Forwards edited; our Via is added by its client transaction). */
  readonly request: SipRequest;
}

export interface ReplyEvent {
  /** the request as received from upstream. */
  readonly request: SipRequest;
  readonly branch: BranchInfo;
  /** the response as received on the branch, our Via still on top (it is removed when forwarded). Edit it in place. */
  readonly response: SipResponse;
}

/** `forward` (or nothing): go on; `drop`: do not pass this provisional upstream (ignored for a final). */
export type ReplyVerdict = 'forward' | 'drop';

export interface ReplyStep {
  /** for logs. */
  readonly name: string;
  onReply(e: ReplyEvent): ReplyVerdict | undefined | void;
}

export interface FailureEvent {
  /** the request as received from upstream. */
  readonly request: SipRequest;
  /**
   * the best final response of all branches so far, as it would go upstream: our Via removed,
   * challenges of several branches merged, status as received (a 503 is turned into 500, §16.7
   * step 6, only after the steps let it go). Edits are kept when it is forwarded.
   */
  readonly response: SipResponse;
  /** the response was made by sipd (Timer B/C, transport error, no route to a target), not received. */
  readonly local: boolean;
  /** every final response of every ended branch so far, in the order they ended (received ones with our Via on top). */
  readonly finals: readonly SipResponse[];
  /** failure rounds already retried in this response context (0 the first time). */
  readonly round: number;
}

export type FailureVerdict =
  | { readonly action: 'forward' }
  /** try these targets now (at most MAX_RETRY_TARGETS are used). An empty list counts as `forward`. */
  | { readonly action: 'retry'; readonly targets: readonly ForwardTarget[] };

export interface FailureStep {
  readonly name: string;
  onFailure(e: FailureEvent): FailureVerdict | Promise<FailureVerdict>;
}

/** The response side of the pipeline, given to the Proxy at construction. */
export interface ResponseSteps {
  readonly reply?: readonly ReplyStep[];
  readonly failure?: readonly FailureStep[];
}

/** Most failure rounds (retries) one response context makes: failover cannot loop. */
export const MAX_FAILURE_ROUNDS = 8;
/** Most targets one retry forwards to. */
export const MAX_RETRY_TARGETS = 16;

export const FORWARD: FailureVerdict = { action: 'forward' };
