export { SipParseError, isSipParseError, type SipParseErrorCode, type PartialMessage } from './errors.js';
export { parseMessage, parseMessageGeneral, DEFAULT_LIMITS, type ParseLimits, type ParseOptions } from './parse.js';
export { SipMessage, SipRequest, SipResponse, parseBoundedInt, type HeaderField, type CSeq, type SipMessageAny } from './message.js';
export { buildResponse, serialize, REASONS, type ResponseOptions } from './serialize.js';
export { StreamFramer, type FrameEvent, type FramerLimits } from './framing.js';
export { checkRequest, checkResponse, KNOWN_METHODS, type Rejection } from './validate.js';
export {
  parseUri, parseSipUri, uriEquals, isSipUri, unescapeOnce, hostAddress, formatHost, parseHostPort,
  type Uri, type SipUri, type TelUri, type OpaqueUri,
} from './uri.js';
export { parseNameAddr, parseContact, isStar, formatNameAddr, type NameAddr, type ContactStar } from './name-addr.js';
export { parseVia, formatVia, MAGIC_COOKIE, type Via } from './via.js';
export { parseHeaderParams, unquote, quote, formatParams, type Params } from './params.js';
export { parseAuthHeader, formatAuthHeader, type AuthHeader } from './digest-header.js';
export { headerKey, canonicalName, splitList, isToken, LIST_HEADERS } from './headers.js';
