/** parseVia: every spelling of sent-protocol and sent-by gives the same result (fast and general paths agree). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseVia, SipParseError } from '../../src/sip/index.js';

const pick = (raw: string): unknown => {
  try {
    const v = parseVia(raw);
    return [v.protocol, v.transport, v.host, v.port, [...v.params], v.branch, v.received, v.rport];
  } catch (e) {
    if (!(e instanceof SipParseError)) throw e;
    return e.code;
  }
};

describe('parseVia spellings', () => {
  it('LWS and case in sent-protocol do not change the result', () => {
    const ws = fc.constantFrom('', ' ', '  ', '\t', ' \t ');
    fc.assert(
      fc.property(
        fc.constantFrom('SIP', 'sip', 'Sip'), ws, ws, ws, ws, fc.constantFrom('UDP', 'udp', 'Tcp', 'TLS', 'tls', 'SCTP', 'ws', 'WSS', 'X-FOO'),
        fc.constantFrom('host.example.com', '192.0.2.1', '[2001:db8::1]', 'HOST.Example.COM'), fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }),
        fc.constantFrom('', ';branch=z9hG4bKa', ';branch=z9hG4bKa;rport', ';rport=5060;received=10.0.0.1', ' ; branch = x'),
        (name, w1, w2, w3, w4, transport, host, port, params) => {
          const canonical = `SIP/2.0/${transport.toUpperCase()} ${host}${port !== undefined ? ':' + port : ''}${params}`;
          const spelled = `${name}${w1}/${w2}2.0${w3}/${w4}${transport} ${host}${port !== undefined ? ':' + port : ''}${params}`;
          expect(pick(spelled)).toEqual(pick(canonical));
          expect(pick(canonical)).not.toBe('BAD_VIA');
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('known values', () => {
    expect(pick('SIP/2.0/ udp h.example.com ; branch=z9hG4bK1')).toEqual(['SIP/2.0', 'UDP', 'h.example.com', undefined, [['branch', 'z9hG4bK1']], 'z9hG4bK1', undefined, undefined]);
    expect(pick('SIP/3.0/TCP h:5061;rport')).toEqual(['SIP/3.0', 'TCP', 'h', 5061, [['rport', null]], undefined, undefined, true]);
    expect(pick('SIP/2.0/UDP')).toBe('BAD_VIA');
    expect(pick('SIP/2.0/ h')).toBe('BAD_VIA');
    expect(pick('SIP/2.0/U@P h')).toBe('BAD_VIA');
    expect(pick('SIP/2.0/UDP h x')).toBe('BAD_VIA');
  });
});
