/** Benchmark messages: what a proxy/registrar sees most, as they arrive from the socket (Buffers, CRLF). */

const crlf = (lines: string[]): Buffer => Buffer.from(lines.join('\r\n'), 'latin1');

const SDP = [
  'v=0',
  'o=alice 2890844526 2890844526 IN IP4 192.0.2.101',
  's=-',
  'c=IN IP4 192.0.2.101',
  't=0 0',
  'm=audio 49172 RTP/AVP 0 8 101',
  'a=rtpmap:0 PCMU/8000',
  'a=rtpmap:8 PCMA/8000',
  'a=rtpmap:101 telephone-event/8000',
  'a=fmtp:101 0-16',
  'a=ptime:20',
  'a=sendrecv',
  '',
].join('\r\n');

/** A typical INVITE from a softphone, via one upstream proxy (two Vias, one Route), with an SDP offer. */
export const INVITE = crlf([
  'INVITE sip:bob@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK776asdhds;rport',
  'Via: SIP/2.0/UDP 192.0.2.101:5060;received=198.51.100.7;branch=z9hG4bKnashds8;rport=5060',
  'Max-Forwards: 69',
  'Route: <sip:proxy.example.com;lr>',
  'To: Bob <sip:bob@example.com>',
  'From: "Alice" <sip:alice@example.com>;tag=1928301774',
  'Call-ID: a84b4c76e66710@pc33.example.com',
  'CSeq: 314159 INVITE',
  'Contact: <sip:alice@192.0.2.101:5060;transport=udp>',
  'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE',
  'Supported: replaces, timer, 100rel',
  'User-Agent: ExamplePhone/5.1.2',
  'Content-Type: application/sdp',
  `Content-Length: ${Buffer.byteLength(SDP)}`,
  '',
  SDP,
]);

/** A REGISTER answering a digest challenge. */
export const REGISTER = crlf([
  'REGISTER sip:example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds7;rport',
  'Max-Forwards: 70',
  'To: Alice <sip:alice@example.com>',
  'From: Alice <sip:alice@example.com>;tag=456248',
  'Call-ID: 843817637684230@998sdasdh09',
  'CSeq: 1827 REGISTER',
  'Contact: <sip:alice@192.0.2.101:5060;transport=udp>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"',
  'Authorization: Digest username="alice", realm="example.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", uri="sip:example.com", ' +
    'response="dfe56131d1958046689d83306477ecc", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001, opaque="5ccc069c403ebaf9f0171e9517f40e41"',
  'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE',
  'Supported: path, outbound, gruu',
  'User-Agent: ExamplePhone/5.1.2',
  'Expires: 3600',
  'Content-Length: 0',
  '',
  '',
]);

const SDP_ANSWER = SDP.replace(/alice/g, 'bob').replace(/192\.0\.2\.101/g, '192.0.2.202');

/** A 200 OK to an INVITE that went through three record-routing proxies, with an SDP answer. */
export const OK200 = crlf([
  'SIP/2.0 200 OK',
  'Via: SIP/2.0/UDP proxy3.example.net:5060;branch=z9hG4bK2d4790.1;received=203.0.113.30',
  'Via: SIP/2.0/UDP proxy2.example.org:5060;branch=z9hG4bK721e418c4.1',
  'Via: SIP/2.0/UDP proxy1.example.com:5060;branch=z9hG4bKnashds8.1;rport=5060',
  'Via: SIP/2.0/UDP 192.0.2.101:5060;received=198.51.100.7;branch=z9hG4bKnashds8;rport=5060',
  'Record-Route: <sip:proxy3.example.net;lr>',
  'Record-Route: <sip:proxy2.example.org;lr;ftag=1928301774>',
  'Record-Route: <sip:proxy1.example.com;lr>',
  'To: Bob <sip:bob@example.com>;tag=a6c85cf',
  'From: "Alice" <sip:alice@example.com>;tag=1928301774',
  'Call-ID: a84b4c76e66710@pc33.example.com',
  'CSeq: 314159 INVITE',
  'Contact: <sip:bob@192.0.2.202:5060>',
  'Allow: INVITE, ACK, CANCEL, BYE, OPTIONS',
  'Supported: replaces, timer',
  'Content-Type: application/sdp',
  `Content-Length: ${Buffer.byteLength(SDP_ANSWER)}`,
  '',
  SDP_ANSWER,
]);

export const MESSAGES: ReadonlyArray<readonly [string, Buffer]> = [
  ['INVITE+SDP', INVITE],
  ['REGISTER+Auth', REGISTER],
  ['200 OK+3 RR', OK200],
];

const HEAD = [
  'INVITE sip:bob@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.101:5060;branch=z9hG4bKnashds8',
  'Max-Forwards: 70',
  'To: <sip:bob@example.com>',
  'From: <sip:alice@example.com>;tag=1',
  'Call-ID: scale@example.com',
  'CSeq: 1 INVITE',
];

/** A request whose `name` header is `unit` repeated to about `kb` KiB (pathological but well formed). */
export function scaled(kind: 'via-params' | 'contact-list' | 'quoted-pairs' | 'auth-params', kb: number): Buffer {
  const target = kb * 1024;
  let line: string;
  const fill = (prefix: string, unit: string, suffix = ''): string => prefix + unit.repeat(Math.max(1, Math.floor((target - prefix.length - suffix.length) / unit.length))) + suffix;
  switch (kind) {
    case 'via-params':
      line = fill('Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKx', ';p=v');
      break;
    case 'contact-list':
      line = fill('Contact: <sip:a@192.0.2.1>', ', <sip:a@192.0.2.1>');
      break;
    case 'quoted-pairs':
      line = fill('Contact: "', '\\"', '" <sip:c@example.com>');
      break;
    case 'auth-params': {
      // distinct parameter names (a duplicate is an error)
      line = 'Authorization: Digest username="alice"';
      for (let i = 0; line.length < target - 16; i++) line += `, p${i}="v,w"`;
      break;
    }
  }
  return crlf([...HEAD, line, 'Content-Length: 0', '', '']);
}
