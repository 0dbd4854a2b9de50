/** The `proxies` section of the configuration: defaults, what is refused, and the message for each. */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { problemsOf } from '../support/config-problems.js';

const TOKEN = {
  issuer: 'https://idp.example.com/realms/prod',
  clientId: 'orders-client',
  clientSecretFile: '/secrets/orders/client-secret',
  grant: 'client_credentials',
};

/** A document with token `orders` (and `billing`), the given proxies and top-level keys. */
function doc(proxies: unknown, top: Record<string, unknown> = {}): string {
  return stringify({ tokens: { orders: TOKEN, billing: TOKEN }, proxies, ...top });
}

const ENTRY = { listen: '127.0.0.1:9101', upstream: 'https://orders.internal', token: 'orders' };

describe('config: proxies', () => {
  it('fills in the defaults: Authorization: Bearer, 60 s timeout, 5 s connect timeout, 64 KiB retry body, loopback only', () => {
    const config = parseConfig(doc([ENTRY]), { env: {} });
    expect(config.proxies).toEqual([
      {
        name: 'orders',
        listen: { kind: 'tcp', host: '127.0.0.1', port: 9101 },
        allowRemote: false,
        upstream: 'https://orders.internal',
        token: 'orders',
        header: 'Authorization',
        scheme: 'Bearer',
        caFile: undefined,
        certFile: undefined,
        keyFile: undefined,
        timeoutMs: 60_000,
        connectTimeoutMs: 5_000,
        retryBodyLimit: 65_536,
      },
    ]);
  });

  it('takes every key: unix socket, custom header with a raw value, mTLS files, durations and sizes as strings', () => {
    const config = parseConfig(
      doc([
        {
          name: 'orders-raw',
          listen: 'unix:/var/run/tokend/orders.sock',
          upstream: 'https://orders.internal:8443/api/v2/',
          token: 'orders',
          header: 'X-Api-Key',
          scheme: '',
          caFile: '/etc/ca.pem',
          certFile: '/etc/client.pem',
          keyFile: '/etc/client.key',
          timeout: '2m',
          connectTimeout: 1.5,
          retryBodyLimit: '1MiB',
        },
        { listen: '[::1]:9102', upstream: 'http://127.0.0.1:8080', token: 'orders', retryBodyLimit: 0 },
        { listen: '0.0.0.0:9103', allowRemote: 'true', upstream: 'http://localhost:8081', token: 'billing' },
      ]),
      { env: {} },
    );
    expect(config.proxies?.[0]).toMatchObject({
      name: 'orders-raw',
      listen: { kind: 'unix', path: '/var/run/tokend/orders.sock' },
      upstream: 'https://orders.internal:8443/api/v2/',
      header: 'X-Api-Key',
      scheme: '',
      caFile: '/etc/ca.pem',
      certFile: '/etc/client.pem',
      keyFile: '/etc/client.key',
      timeoutMs: 120_000,
      connectTimeoutMs: 1_500,
      retryBodyLimit: 1_048_576,
    });
    expect(config.proxies?.[1]).toMatchObject({ name: 'orders', listen: { kind: 'tcp', host: '::1', port: 9102 }, retryBodyLimit: 0 });
    expect(config.proxies?.[2]).toMatchObject({ name: 'billing', allowRemote: true, listen: { kind: 'tcp', host: '0.0.0.0', port: 9103 } });
  });

  it('leaves proxies out of the resolved config when the section is absent', () => {
    expect('proxies' in parseConfig(stringify({ tokens: { orders: TOKEN } }), { env: {} })).toBe(false);
  });

  it.each([
    [{ upstream: 'http://orders.internal' }, 'proxies[0].upstream: expected an https:// URL (http:// only on a loopback host)'],
    [{ upstream: 'ftp://orders.internal' }, 'proxies[0].upstream: expected an https:// URL (http:// only on a loopback host)'],
    [{ upstream: 'orders.internal' }, 'proxies[0].upstream: expected an https:// URL (http:// only on a loopback host)'],
    [{ upstream: 'https://user:pw@orders.internal' }, 'proxies[0].upstream: must not contain credentials'],
    [{ upstream: 'https://orders.internal/#frag' }, 'proxies[0].upstream: must not contain a fragment'],
    [{ upstream: 'https://orders.internal/?a=1' }, 'proxies[0].upstream: must not contain a query'],
    [{ listen: '10.0.0.5:9101' }, 'proxies[0].listen: 10.0.0.5 is not a loopback address; set allowRemote: true to listen on it'],
    [{ listen: 'nowhere' }, 'proxies[0].listen: expected host:port, [ipv6]:port or unix:/absolute/path'],
    [{ token: 'missing' }, 'proxies[0].token: expected the name of a token configured under tokens'],
    [{ header: 'Bad Header' }, 'proxies[0].header: expected an HTTP header name'],
    [{ header: 'Host' }, 'proxies[0].header: is managed by the proxy itself; choose another header'],
    [{ header: 'proxy-authorization' }, 'proxies[0].header: is managed by the proxy itself; choose another header'],
    [{ header: 'Proxy-Token' }, 'proxies[0].header: is managed by the proxy itself; choose another header'],
    [{ scheme: 'Bearer token' }, 'proxies[0].scheme: expected an auth scheme like Bearer, or "" for the raw token'],
    [{ certFile: '/c.pem' }, 'proxies[0].keyFile: certFile and keyFile go together (mutual TLS)'],
    [{ keyFile: '/k.pem' }, 'proxies[0].certFile: certFile and keyFile go together (mutual TLS)'],
    [{ upstream: 'http://127.0.0.1:8080', caFile: '/ca.pem' }, 'proxies[0].caFile: only used with an https:// upstream'],
    [{ timeout: 0 }, 'proxies[0].timeout: expected a duration above 0'],
    [{ connectTimeout: 'soon' }, 'proxies[0].connectTimeout: expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d'],
    [{ retryBodyLimit: '64KB' }, 'proxies[0].retryBodyLimit: expected a size in bytes: a number, or a string like 64KiB or 1MiB'],
    [{ retryBodyLimit: -1 }, 'proxies[0].retryBodyLimit: expected a size in bytes: a number, or a string like 64KiB or 1MiB'],
    [{ retryBodyLimit: '17MiB' }, 'proxies[0].retryBodyLimit: expected at most 16MiB'],
    [{ name: 'Orders!' }, 'proxies[0].name: proxy names must match [a-z0-9][a-z0-9_.-]{0,62}'],
    [{ allowRemote: 'yes' }, 'proxies[0].allowRemote: expected true or false'],
    [{ extra: 1 }, 'proxies[0].extra: unknown key'],
  ])('refuses %j: %s', (change, problem) => {
    expect(problemsOf(doc([{ ...ENTRY, ...change }]))).toContain(problem);
  });

  it('refuses a listen address taken by the endpoint, the metrics listener or another proxy, and two proxies with one name', () => {
    const problems = problemsOf(
      doc(
        [
          { ...ENTRY, listen: '127.0.0.1:8477' },
          { ...ENTRY, listen: '127.0.0.1:9477' },
          { ...ENTRY, listen: '127.0.0.1:9200', name: 'a' },
          { ...ENTRY, listen: '127.0.0.1:9200', name: 'b' },
          { ...ENTRY, listen: 'unix:/run/p.sock', name: 'c' },
          { ...ENTRY, listen: 'unix:/run/p.sock', name: 'd' },
        ],
        { listen: '127.0.0.1:8477', metricsListen: '0.0.0.0:9477' },
      ),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'proxies[0].listen: must differ from listen',
        'proxies[1].listen: must differ from metricsListen',
        'proxies[1].name: same name as proxies[0] (the token name by default); give each proxy a distinct name',
        'proxies[3].listen: must differ from proxies[2].listen',
        'proxies[5].listen: must differ from proxies[4].listen',
      ]),
    );
  });

  it('never echoes the token field, where someone may have pasted a token itself', () => {
    const pasted = 'eyJhbGciOiJSUzI1NiJ9.pasted-by-mistake.sig';
    let message = '';
    try {
      parseConfig(doc([{ ...ENTRY, token: pasted }]), { env: {} });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('proxies[0].token');
    expect(message).not.toContain(pasted);
  });
});
