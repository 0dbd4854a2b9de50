/**
 * The egress proxy's pure rules: which request targets pass and where they land, which headers
 * cross (RFC 9110 §7.6.1), which 401s mean "this token is invalid", and how upstream errors are
 * told apart.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isFieldValue, rejectsToken, responseHeaders, scanRequest } from '../../src/proxy/headers.js';
import { retryAfterSeconds } from '../../src/server/responses.js';
import { basePathPrefix, checkTarget, pathForLog } from '../../src/proxy/target.js';
import { classifyUpstreamError, UpstreamTimeout } from '../../src/proxy/upstream.js';

describe('request targets', () => {
  it.each([
    ['/', undefined],
    ['/v1/orders?limit=2&next=a..b', undefined],
    ['/files/a..b/.hidden/v1.2', undefined],
    ['/a/./b', undefined],
    ['/%41%42', undefined],
    ['http://other.example/', 'not_origin_form'],
    ['other.example:443', 'not_origin_form'],
    ['*', 'not_origin_form'],
    ['', 'not_origin_form'],
    ['/..', 'dot_segment'],
    ['/a/../../b', 'dot_segment'],
    ['/a/%2e%2e/b', 'dot_segment'],
    ['/a/%2E./b', 'dot_segment'],
    ['/a/..%2Fb', 'dot_segment'],
    ['/a/..%5cb', 'dot_segment'],
    ['/a\\..\\b', 'dot_segment'],
    ['/a/..?x=1', 'dot_segment'],
  ])('%s -> %s', (target, problem) => {
    expect(checkTarget(target)).toBe(problem);
  });

  it('never lets an accepted target climb above the base path, however the upstream normalises it', () => {
    const segment = fc.oneof(
      fc.constantFrom('..', '.', '%2e%2e', '%2E.', '.%2e', 'a', 'b..c', '%2f', '..%2f', '%5c..', 'x\\..', ''),
      fc.stringMatching(/^[a-z0-9.%]{0,6}$/),
    );
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 8 }), fc.constantFrom('', '/api', '/api/v2'), (segments, prefix) => {
        const target = `/${segments.join('/')}`;
        if (checkTarget(target) !== undefined) return;
        // The WHATWG URL parser decodes %2e, treats \ as / and removes dot segments, like many servers.
        const path = new URL(`http://upstream${prefix}${target}`).pathname;
        expect(path.startsWith(`${prefix}/`) || path === prefix).toBe(true);
      }),
    );
  });

  it('joins the base path without doubling the slash', () => {
    expect(basePathPrefix(new URL('https://h/'))).toBe('');
    expect(basePathPrefix(new URL('https://h'))).toBe('');
    expect(basePathPrefix(new URL('https://h/api/'))).toBe('/api');
    expect(basePathPrefix(new URL('https://h/api/v2'))).toBe('/api/v2');
  });

  it('logs paths without their query, cut to 256 characters', () => {
    expect(pathForLog('/a/b?api_key=secret')).toBe('/a/b');
    expect(pathForLog(`/${'x'.repeat(300)}`)).toBe(`/${'x'.repeat(255)}...`);
  });
});

describe('request headers', () => {
  it('drops hop-by-hop headers, those Connection names, Proxy-*, Host, Expect and every copy of the token header; keeps the rest as sent', () => {
    const raw = [
      'Host', 'app.local',
      'Authorization', 'Bearer app',
      'AUTHORIZATION', 'Basic app',
      'Connection', 'keep-alive, X-Trace-Hop, close',
      'X-Trace-Hop', '1',
      'Keep-Alive', 'timeout=5',
      'Proxy-Authorization', 'Basic p',
      'Proxy-Connection', 'keep-alive',
      'TE', 'trailers',
      'Trailer', 'X-Checksum',
      'Upgrade', 'h2c',
      'Expect', '100-continue',
      'Content-Type', 'application/json',
      'Set-Cookie', 'a=1',
      'cookie', 'b=2',
      'Content-Length', '12',
    ];
    const scan = scanRequest(raw, 'authorization', false);
    expect(scan.headers).toEqual(['Content-Type', 'application/json', 'Set-Cookie', 'a=1', 'cookie', 'b=2']);
    expect(scan.contentLength).toBe(12);
    expect(scan.chunked).toBe(false);
  });

  it('reports a chunked body, and no body', () => {
    expect(scanRequest(['Transfer-Encoding', 'chunked'], 'authorization', false)).toEqual({ headers: [], contentLength: -1, chunked: true });
    expect(scanRequest(['Accept', '*/*'], 'authorization', false)).toEqual({ headers: ['Accept', '*/*'], contentLength: -1, chunked: false });
  });

  it('drops a custom token header in any case, and keeps Authorization then', () => {
    const scan = scanRequest(['x-api-key', 'app', 'X-API-KEY', 'app2', 'Authorization', 'Bearer b'], 'x-api-key', false);
    expect(scan.headers).toEqual(['Authorization', 'Bearer b']);
  });

  it('keeps Upgrade for an upgrade request', () => {
    const scan = scanRequest(['Connection', 'Upgrade', 'Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k'], 'authorization', true);
    expect(scan.headers).toEqual(['Upgrade', 'websocket', 'Sec-WebSocket-Key', 'k']);
  });
});

describe('response headers', () => {
  it('drops hop-by-hop headers and the ones Connection names; keeps duplicates and case', () => {
    const raw = [
      'Connection', 'X-Hop',
      'X-Hop', '1',
      'Keep-Alive', 'timeout=5',
      'Transfer-Encoding', 'chunked',
      'Proxy-Authenticate', 'Basic',
      'Upgrade', 'h2c',
      'Set-Cookie', 'a=1',
      'Set-Cookie', 'b=2',
      'Content-Length', '3',
      'WWW-Authenticate', 'Bearer',
    ];
    expect(responseHeaders(raw)).toEqual(['Set-Cookie', 'a=1', 'Set-Cookie', 'b=2', 'Content-Length', '3', 'WWW-Authenticate', 'Bearer']);
    expect(responseHeaders(['Upgrade', 'websocket', 'Connection', 'Upgrade'], true)).toEqual(['Upgrade', 'websocket']);
  });
});

describe('a 401 that says the token is invalid', () => {
  it.each([
    [undefined, true],
    ['Bearer', true],
    ['Bearer realm="orders"', true],
    ['Bearer realm="orders", error="invalid_token", error_description="expired"', true],
    ['Bearer error=invalid_token', true],
    ['Basic realm="x", Bearer error="invalid_token"', true],
    ['Bearer error="insufficient_scope", scope="orders:write"', false],
    ['Bearer error="invalid_request"', false],
    ['Bearer error_description="invalid_token"', true],
    ['Bearer realm="error=invalid_token"', true],
  ])('%s -> %s', (header, expected) => {
    expect(rejectsToken(header)).toBe(expected);
  });
});

describe('header values', () => {
  it.each([
    ['eyJhbGciOiJSUzI1NiJ9.e30.sig', true],
    ['Bearer abc', true],
    ['opaque~token+/=', true],
    ['', false],
    ['a\r\nX-Injected: 1', false],
    ['a\nb', false],
    ['a\0b', false],
    [' leading', false],
    ['tr\u00e4iler', false],
  ])('%j -> %s', (value, ok) => {
    expect(isFieldValue(value)).toBe(ok);
  });
});

describe('upstream errors', () => {
  const err = (code: string): Error => Object.assign(new Error(code), { code });
  it.each([
    [err('ECONNREFUSED'), 'unreachable'],
    [err('ENOTFOUND'), 'unreachable'],
    [err('EAI_AGAIN'), 'unreachable'],
    [err('EHOSTUNREACH'), 'unreachable'],
    [err('ETIMEDOUT'), 'connect_timeout'],
    [new UpstreamTimeout('connect'), 'connect_timeout'],
    [new UpstreamTimeout('response'), 'timeout'],
    [err('DEPTH_ZERO_SELF_SIGNED_CERT'), 'tls'],
    [err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'tls'],
    [err('ERR_TLS_CERT_ALTNAME_INVALID'), 'tls'],
    [err('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED'), 'tls'],
    [err('CERT_HAS_EXPIRED'), 'tls'],
    [err('ECONNRESET'), 'failed'],
    [err('HPE_INVALID_CONSTANT'), 'failed'],
    [new Error('no code'), 'failed'],
    ['not an error', 'failed'],
  ])('%s -> %s', (e, kind) => {
    expect(classifyUpstreamError(e)).toBe(kind);
  });
});

describe('Retry-After', () => {
  it.each([
    [0, '1'],
    [1, '1'],
    [1_000, '1'],
    [1_001, '2'],
    [60_000, '60'],
    [Number.NaN, '1'],
    [Number.POSITIVE_INFINITY, '1'],
  ])('%d ms -> %s s', (ms, s) => {
    expect(retryAfterSeconds(ms)).toBe(s);
  });
});
