/**
 * Browser phones (RFC 7118) put an unreachable `*.invalid` host in Contact: an in-dialog request
 * sent to that Contact could never reach them. Until registrations and dialogs are bound to
 * their WebSocket connection (RFC 5626 flows), sipd rewrites the host:port of the Contact of a
 * request or response that arrived over WS/WSS to the connection's source address and port (what
 * Kamailio's fix_nated_contact does), keeping the user part and every parameter (transport=ws
 * included): an in-dialog request to it then goes over that same connection. REGISTER is left
 * alone (the registrar records the source as `received`).
 */
import { formatHost, isSipUri, type SipRequest, type SipResponse } from '../sip/index.js';
import type { Source } from '../transport/types.js';

const HOSTPORT = /^(sips?:)([^@;?>]*@)?(\[[^\]]+\]|[^:;?>\s]+)(:\d+)?/i;

/** Rewrite the Contact host:port of a message from a WebSocket connection; true when it changed anything. */
export function fixWebSocketContact(msg: SipRequest | SipResponse, src: Source): boolean {
  if (src.transport !== 'ws' && src.transport !== 'wss') return false;
  if ('method' in msg && msg.method === 'REGISTER') return false;
  if (!msg.has('contact')) return false;
  let contacts;
  try {
    contacts = msg.contacts();
  } catch {
    return false; // a malformed Contact is left for the core to judge
  }
  if (contacts.length !== 1) return false;
  const c = contacts[0]!;
  if (!('uri' in c) || !isSipUri(c.uri)) return false;
  const raw = c.raw.trim();
  const open = raw.indexOf('<');
  const start = open === -1 ? 0 : open + 1;
  const m = HOSTPORT.exec(raw.slice(start));
  if (m === null) return false;
  const hostport = `${formatHost(src.address)}:${src.port}`;
  const value = `${raw.slice(0, start)}${m[1]}${m[2] ?? ''}${hostport}${raw.slice(start + m[0].length)}`;
  if (value === raw) return false;
  msg.setHeader('contact', value);
  return true;
}
