/** Stable codes for everything the parser can reject. Callers and tests match on these. */
export type SipParseErrorCode =
  | 'TOO_LARGE'
  | 'EMPTY'
  | 'BAD_START_LINE'
  | 'BAD_VERSION'
  | 'BAD_STATUS'
  | 'BAD_METHOD'
  | 'BAD_URI'
  | 'BAD_HEADER'
  | 'TOO_MANY_HEADERS'
  | 'HEADER_TOO_LONG'
  | 'TOO_MANY_VIAS'
  | 'BAD_CONTENT_LENGTH'
  | 'BODY_TRUNCATED'
  | 'BAD_VIA'
  | 'BAD_NAME_ADDR'
  | 'BAD_CSEQ'
  | 'BAD_NUMBER'
  | 'BAD_PARAMS'
  | 'BAD_AUTH'
  | 'FRAMING';

/** What the parser could still read before it gave up, so the core can answer 400. */
export interface PartialMessage {
  isRequest?: boolean;
  method?: string;
  /** raw top-to-bottom Via header values (header lines, not split). */
  via?: string[];
  callId?: string;
  cseq?: string;
  from?: string;
  to?: string;
}

export class SipParseError extends Error {
  override readonly name = 'SipParseError';
  readonly code: SipParseErrorCode;
  /** short reason, usable as a 400 reason phrase (ASCII, no CR/LF, <= 60 chars). */
  readonly reason: string;
  partial: PartialMessage;

  constructor(code: SipParseErrorCode, reason: string, partial: PartialMessage = {}) {
    const safe = reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 60);
    super(`${code}: ${safe}`);
    this.code = code;
    this.reason = safe;
    this.partial = partial;
  }
}

export function isSipParseError(e: unknown): e is SipParseError {
  return e instanceof SipParseError;
}
