import { describe, expect, it } from 'vitest';
import { fixWebSocketContact } from '../../src/core/ws-contact.js';
import { parseMessage, type SipRequest, type SipResponse } from '../../src/sip/index.js';
import type { Source } from '../../src/transport/types.js';

const EP = { transport: 'ws' as const, address: '127.0.0.1', port: 8080, advertise: '127.0.0.1' };
const WS: Source = { transport: 'ws', address: '198.51.100.7', port: 51234, connectionId: 1000000001, local: EP };

function invite(contact: string, method = 'INVITE'): SipRequest {
  return parseMessage(
    Buffer.from(
      `${method} sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/WS h.invalid;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: x\r\nCSeq: 1 ${method}\r\nContact: ${contact}\r\nContent-Length: 0\r\n\r\n`,
    ),
  ) as SipRequest;
}

describe('fixWebSocketContact', () => {
  it('rewrites the host:port of a WS client Contact to the connection source, keeping user, parameters and header params', () => {
    const req = invite('"Alice" <sip:k3k5@df7jal23ls0d.invalid;transport=ws;ob>;+sip.instance="<urn:uuid:1>";expires=600');
    expect(fixWebSocketContact(req, WS)).toBe(true);
    expect(req.header('contact')).toBe('"Alice" <sip:k3k5@198.51.100.7:51234;transport=ws;ob>;+sip.instance="<urn:uuid:1>";expires=600');
    // idempotent
    expect(fixWebSocketContact(req, WS)).toBe(false);
  });

  it('handles a Contact without brackets or user, with a port, and IPv6 sources', () => {
    const a = invite('sip:h.invalid:99;transport=ws');
    fixWebSocketContact(a, WS);
    expect(a.header('contact')).toBe('sip:198.51.100.7:51234;transport=ws');
    const b = invite('<sip:u@h.invalid;transport=wss>');
    fixWebSocketContact(b, { ...WS, transport: 'wss', address: '2001:db8::5' });
    expect(b.header('contact')).toBe('<sip:u@[2001:db8::5]:51234;transport=wss>');
  });

  it('leaves REGISTER, non-WS sources, responses without Contact and several Contacts alone', () => {
    const reg = invite('<sip:u@h.invalid;transport=ws>', 'REGISTER');
    expect(fixWebSocketContact(reg, WS)).toBe(false);
    const udp = invite('<sip:u@h.invalid>');
    expect(fixWebSocketContact(udp, { ...WS, transport: 'udp' })).toBe(false);
    expect(udp.header('contact')).toBe('<sip:u@h.invalid>');
    const two = invite('<sip:u@h.invalid>, <sip:v@h.invalid>');
    expect(fixWebSocketContact(two, WS)).toBe(false);
    const res = parseMessage(Buffer.from('SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n')) as SipResponse;
    expect(fixWebSocketContact(res, WS)).toBe(false);
  });

  it('rewrites the Contact of a response from a WS callee', () => {
    const res = parseMessage(
      Buffer.from('SIP/2.0 200 OK\r\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContact: <sip:zz@q.invalid;transport=ws>\r\nContent-Length: 0\r\n\r\n'),
    ) as SipResponse;
    expect(fixWebSocketContact(res, WS)).toBe(true);
    expect(res.header('contact')).toBe('<sip:zz@198.51.100.7:51234;transport=ws>');
  });
});
