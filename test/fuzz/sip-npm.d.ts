// Minimal typings for the `sip` npm package (CJS, no bundled types), used by the differential test and the benchmark.
declare module 'sip' {
  export interface SipNpmUri {
    schema?: string;
    user?: string;
    password?: string;
    host?: string;
    port?: number;
    params: Record<string, string | null>;
    headers: Record<string, string>;
  }
  export interface SipNpmAor {
    name?: string;
    uri: string | SipNpmUri;
    params: Record<string, string | null>;
  }
  export interface SipNpmVia {
    version: string;
    protocol: string;
    host: string;
    port?: number;
    params: Record<string, string | null>;
  }
  export interface SipNpmMessage {
    method?: string;
    uri?: string;
    status?: number;
    reason?: string;
    version: string;
    headers: Record<string, any>;
    content?: string;
  }
  const sip: {
    parse(data: string | Buffer): SipNpmMessage | undefined;
    stringify(m: SipNpmMessage): string;
    parseUri(s: string): SipNpmUri | undefined;
    stringifyUri(u: SipNpmUri | string): string;
  };
  export default sip;
}
