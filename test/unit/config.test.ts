import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig, type Env } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';

/** The problem lines parseConfig reports for `text` (fails the test when it accepts the text). */
function problemsOf(text: string, env: Env = {}, source?: string): readonly string[] {
  try {
    parseConfig(text, { env, source });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

/** The ConfigError thrown for `text`. */
function errorOf(text: string, env: Env = {}, source?: string): ConfigError {
  try {
    parseConfig(text, { env, source });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected the configuration to be refused');
}

const TOKEN = {
  issuer: 'https://idp.example.com/realms/prod',
  clientId: 'orders-client',
  clientSecretFile: '/secrets/orders/client-secret',
  grant: 'client_credentials',
};

/** A document with one valid token `orders`, its fields replaced/extended by `token`, plus `top`. */
function doc(token: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string {
  const t: Record<string, unknown> = { ...TOKEN, ...token };
  for (const [k, v] of Object.entries(t)) if (v === undefined) delete t[k];
  return stringify({ tokens: { orders: t }, ...top });
}

const parse = (text: string, env: Env = {}, source?: string): Config => parseConfig(text, { env, source });

const FULL_YAML = `
# every documented key
listen: "[::1]:9000"
allowRemote: false
metricsListen: 0.0.0.0:9477
logLevel: debug
reconcile: "*/30 * * * * *"
store:
  type: redis
  url: rediss://redis.internal:6380/1
  prefix: "orders:"
  passwordFile: /secrets/redis/password
  encryptionKeyFile: /secrets/redis/key
  lease: 20s
tokens:
  orders:
    issuer: https://idp.example.com/realms/prod
    clientId: orders-client
    clientSecretFile: /secrets/orders/client-secret
    grant: client_credentials
    scope: "orders:read orders:write"
    resource: https://orders.internal
    audience: orders-api
    refreshAt: 0.8
    timeout: 5s
    defaultLifetime: 10m
    revokeOnShutdown: false
  billing.v2:
    tokenEndpoint: http://127.0.0.1:9999/token
    revocationEndpoint: http://127.0.0.1:9999/revoke
    clientId: billing
    grant: refresh_token
    refreshTokenFile: /secrets/billing/refresh-token
    clientAuth: private_key_jwt
    privateKeyFile: /secrets/billing/key.pem
    privateKeyId: k1
    privateKeyAlg: ES256
  legacy:
    tokenEndpoint: https://legacy.example.com/oauth/token
    clientId: \${LEGACY_CLIENT_ID}
    clientSecret: \${LEGACY_SECRET}
    clientAuth: client_secret_post
    grant: refresh_token
    refreshToken: \${LEGACY_REFRESH:-seed-from-default}
verify:
  issuers:
    - issuer: https://idp.example.com/realms/prod
      audience: [orders-api, orders]
      algorithms: [RS256, ES256]
      clockTolerance: 45
      requiredClaims: [sub]
      introspection:
        clientId: orders-api
        clientSecretFile: /secrets/orders/introspection-secret
        clientAuth: client_secret_post
    - issuer: https://hs.example.com
      audience: internal
      algorithms: [HS256]
      hmacSecret: \${HMAC}
      clockTolerance: 500ms
`;

const FULL_ENV = { LEGACY_CLIENT_ID: 'legacy-client', LEGACY_SECRET: 's3cr3t-legacy', HMAC: 'hmac-key' };

const FULL_CONFIG: Config = {
  listen: { kind: 'tcp', host: '::1', port: 9000 },
  allowRemote: false,
  metricsListen: { kind: 'tcp', host: '0.0.0.0', port: 9477 },
  logLevel: 'debug',
  reconcileCron: '*/30 * * * * *',
  store: {
    type: 'redis',
    url: 'rediss://redis.internal:6380/1',
    prefix: 'orders:',
    password: { kind: 'file', path: '/secrets/redis/password' },
    encryptionKeyFile: '/secrets/redis/key',
    sentinels: undefined,
    sentinelName: undefined,
    cluster: undefined,
    leaseMs: 20_000,
  },
  tokens: [
    {
      name: 'orders',
      issuer: 'https://idp.example.com/realms/prod',
      tokenEndpoint: undefined,
      revocationEndpoint: undefined,
      clientId: 'orders-client',
      clientSecret: { kind: 'file', path: '/secrets/orders/client-secret' },
      grant: 'client_credentials',
      refreshToken: undefined,
      scope: 'orders:read orders:write',
      resource: 'https://orders.internal',
      audience: 'orders-api',
      refreshAt: 0.8,
      clientAuth: 'client_secret_basic',
      privateKeyFile: undefined,
      privateKeyId: undefined,
      privateKeyAlg: undefined,
      revokeOnShutdown: false,
      defaultLifetimeMs: 600_000,
      timeoutMs: 5_000,
      allowInsecureHttp: false,
    },
    {
      name: 'billing.v2',
      issuer: undefined,
      tokenEndpoint: 'http://127.0.0.1:9999/token',
      revocationEndpoint: 'http://127.0.0.1:9999/revoke',
      clientId: 'billing',
      clientSecret: undefined,
      grant: 'refresh_token',
      refreshToken: { kind: 'file', path: '/secrets/billing/refresh-token' },
      scope: undefined,
      resource: undefined,
      audience: undefined,
      refreshAt: 0.75,
      clientAuth: 'private_key_jwt',
      privateKeyFile: '/secrets/billing/key.pem',
      privateKeyId: 'k1',
      privateKeyAlg: 'ES256',
      revokeOnShutdown: false,
      defaultLifetimeMs: 300_000,
      timeoutMs: 10_000,
      // http:// is allowed by default because the token endpoint is on a loopback host.
      allowInsecureHttp: true,
    },
    {
      name: 'legacy',
      issuer: undefined,
      tokenEndpoint: 'https://legacy.example.com/oauth/token',
      revocationEndpoint: undefined,
      clientId: 'legacy-client',
      clientSecret: { kind: 'literal', value: 's3cr3t-legacy' },
      grant: 'refresh_token',
      refreshToken: { kind: 'literal', value: 'seed-from-default' },
      scope: undefined,
      resource: undefined,
      audience: undefined,
      refreshAt: 0.75,
      clientAuth: 'client_secret_post',
      privateKeyFile: undefined,
      privateKeyId: undefined,
      privateKeyAlg: undefined,
      revokeOnShutdown: false,
      defaultLifetimeMs: 300_000,
      timeoutMs: 10_000,
      allowInsecureHttp: false,
    },
  ],
  verify: {
    issuers: [
      {
        issuer: 'https://idp.example.com/realms/prod',
        audience: ['orders-api', 'orders'],
        algorithms: ['RS256', 'ES256'],
        hmacSecret: undefined,
        clockToleranceSec: 45,
        requiredClaims: ['sub'],
        introspection: {
          clientId: 'orders-api',
          clientSecret: { kind: 'file', path: '/secrets/orders/introspection-secret' },
          clientAuth: 'client_secret_post',
        },
        allowInsecureHttp: false,
      },
      {
        issuer: 'https://hs.example.com',
        audience: ['internal'],
        algorithms: ['HS256'],
        hmacSecret: { kind: 'literal', value: 'hmac-key' },
        clockToleranceSec: 0.5,
        requiredClaims: [],
        introspection: undefined,
        allowInsecureHttp: false,
      },
    ],
  },
};

describe('parseConfig: valid configurations', () => {
  it('reads a YAML file using every documented key into the resolved Config', () => {
    expect(parse(FULL_YAML, FULL_ENV)).toStrictEqual(FULL_CONFIG);
  });

  it('reads the same configuration written as JSON (strict, chosen by the .json extension)', () => {
    const json = JSON.stringify({
      listen: '[::1]:9000',
      allowRemote: false,
      metricsListen: '0.0.0.0:9477',
      logLevel: 'debug',
      reconcile: '*/30 * * * * *',
      store: {
        type: 'redis',
        url: 'rediss://redis.internal:6380/1',
        prefix: 'orders:',
        passwordFile: '/secrets/redis/password',
        encryptionKeyFile: '/secrets/redis/key',
        lease: '20s',
      },
      tokens: {
        orders: {
          ...TOKEN,
          scope: 'orders:read orders:write',
          resource: 'https://orders.internal',
          audience: 'orders-api',
          refreshAt: 0.8,
          timeout: '5s',
          defaultLifetime: 600,
          revokeOnShutdown: false,
        },
        'billing.v2': {
          tokenEndpoint: 'http://127.0.0.1:9999/token',
          revocationEndpoint: 'http://127.0.0.1:9999/revoke',
          clientId: 'billing',
          grant: 'refresh_token',
          refreshTokenFile: '/secrets/billing/refresh-token',
          clientAuth: 'private_key_jwt',
          privateKeyFile: '/secrets/billing/key.pem',
          privateKeyId: 'k1',
          privateKeyAlg: 'ES256',
        },
        legacy: {
          tokenEndpoint: 'https://legacy.example.com/oauth/token',
          clientId: '${LEGACY_CLIENT_ID}',
          clientSecret: '${LEGACY_SECRET}',
          clientAuth: 'client_secret_post',
          grant: 'refresh_token',
          refreshToken: '${LEGACY_REFRESH:-seed-from-default}',
        },
      },
      verify: {
        issuers: [
          {
            issuer: 'https://idp.example.com/realms/prod',
            audience: ['orders-api', 'orders'],
            algorithms: ['RS256', 'ES256'],
            clockTolerance: '45s',
            requiredClaims: ['sub'],
            introspection: {
              clientId: 'orders-api',
              clientSecretFile: '/secrets/orders/introspection-secret',
              clientAuth: 'client_secret_post',
            },
          },
          { issuer: 'https://hs.example.com', audience: 'internal', algorithms: ['HS256'], hmacSecret: '${HMAC}', clockTolerance: 0.5 },
        ],
      },
    }, null, 2);
    expect(parse(json, FULL_ENV, '/etc/tokend/config.json')).toStrictEqual(FULL_CONFIG);
    // Without a .json name the YAML reader takes it too (JSON is YAML).
    expect(parse(json, FULL_ENV)).toStrictEqual(FULL_CONFIG);
  });

  it('fills every default for the smallest configuration', () => {
    const config = parse(doc());
    expect(config.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8477 });
    expect(config.allowRemote).toBe(false);
    expect(config.logLevel).toBe('info');
    expect(config.reconcileCron).toBe('*/15 * * * * *');
    expect(config.store).toEqual({ type: 'memory' });
    expect(config.verify).toBeUndefined();
    expect(config.tokens).toHaveLength(1);
    expect(config.tokens[0]).toMatchObject({
      name: 'orders',
      refreshAt: 0.75,
      clientAuth: 'client_secret_basic',
      revokeOnShutdown: false,
      defaultLifetimeMs: 300_000,
      timeoutMs: 10_000,
      allowInsecureHttp: false,
    });
  });

  it('keeps tokens in file order', () => {
    const text = stringify({ tokens: { zeta: TOKEN, alpha: TOKEN, m1: TOKEN } });
    expect(parse(text).tokens.map((t) => t.name)).toEqual(['zeta', 'alpha', 'm1']);
  });

  it('accepts a verify section without tokens', () => {
    const config = parse(stringify({ verify: { issuers: [{ issuer: 'https://idp.example.com', audience: 'api' }] } }));
    expect(config.tokens).toEqual([]);
    expect(config.verify?.issuers[0]).toMatchObject({
      audience: ['api'],
      algorithms: undefined,
      clockToleranceSec: 30,
      requiredClaims: [],
    });
  });

  it('resolves the file store with its default mode and state directory', () => {
    expect(parse(doc({}, { store: { type: 'file', dir: '/var/run/tokend' } })).store).toEqual({
      type: 'file',
      dir: '/var/run/tokend',
      mode: 0o600,
      stateDir: '/var/run/tokend/.state',
    });
    expect(
      parse(doc({}, { store: { type: 'file', dir: '/t', mode: '0640', stateDir: '/state' } })).store,
    ).toEqual({ type: 'file', dir: '/t', mode: 0o640, stateDir: '/state' });
  });

  it.each([
    ['mode: "0600"', 0o600],
    ['mode: 0640', 0o640], // unquoted leading zero: YAML 1.2 would say decimal 640; users mean octal
    ['mode: 0o600', 0o600],
    ['mode: 384', 0o600],
    ['mode: "640"', 0o640],
  ])('reads the file mode %s', (line, mode) => {
    const text = `${doc()}store:\n  type: file\n  dir: /t\n  ${line}\n`;
    expect(parse(text).store).toMatchObject({ mode });
  });

  it('refuses an unquoted world-readable mode instead of misreading it as decimal', () => {
    expect(problemsOf(`${doc()}store:\n  type: file\n  dir: /t\n  mode: 0644\n`)).toEqual([
      'store.mode: must not give other users any access (use 0600 or 0640)',
    ]);
  });

  it('resolves a Redis store located by sentinels, with defaults', () => {
    const store = parse(
      doc({}, { store: { type: 'redis', sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: '26379' }], sentinelName: 'mymaster', password: 'pw' } }),
    ).store;
    expect(store).toEqual({
      type: 'redis',
      url: '',
      prefix: 'tokend:',
      password: { kind: 'literal', value: 'pw' },
      encryptionKeyFile: undefined,
      sentinels: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26379 },
      ],
      sentinelName: 'mymaster',
      cluster: undefined,
      leaseMs: 15_000,
    });
  });

  it('resolves a Redis cluster store, defaulting to a prefix with a hash tag', () => {
    const store = parse(doc({}, { store: { type: 'redis', cluster: [{ host: 'r1', port: 7000 }] } })).store;
    expect(store).toMatchObject({ type: 'redis', url: '', prefix: '{tokend}:', cluster: [{ host: 'r1', port: 7000 }] });
  });

  it.each([
    ['127.0.0.1:0', { kind: 'tcp', host: '127.0.0.1', port: 0 }],
    ['localhost:8080', { kind: 'tcp', host: 'localhost', port: 8080 }],
    ['127.8.9.10:1', { kind: 'tcp', host: '127.8.9.10', port: 1 }],
    ['unix:/run/tokend.sock', { kind: 'unix', path: '/run/tokend.sock' }],
  ])('listens on the local address %s without allowRemote', (listen, address) => {
    expect(parse(doc({}, { listen })).listen).toEqual(address);
  });

  it('listens on a remote address only with allowRemote: true', () => {
    expect(parse(doc({}, { listen: '0.0.0.0:8477', allowRemote: true })).listen).toEqual({
      kind: 'tcp',
      host: '0.0.0.0',
      port: 8477,
    });
  });

  it('allows http:// to a loopback issuer by default, and to any host when asked', () => {
    expect(parse(doc({ issuer: 'http://localhost:3000' })).tokens[0]?.allowInsecureHttp).toBe(true);
    expect(parse(doc({ issuer: 'http://[::1]:3000' })).tokens[0]?.allowInsecureHttp).toBe(true);
    const remote = parse(doc({ issuer: 'http://idp.dev.internal', allowInsecureHttp: true }));
    expect(remote.tokens[0]?.allowInsecureHttp).toBe(true);
    expect(parse(doc({ issuer: 'https://localhost', allowInsecureHttp: false })).tokens[0]?.allowInsecureHttp).toBe(false);
  });

  it('accepts a 5-field cron expression too (node-cron validates it)', () => {
    expect(parse(doc({}, { reconcile: '*/5 * * * *' })).reconcileCron).toBe('*/5 * * * *');
  });

  it('accepts refreshAt at both ends of its range and clientAuth none for a public refresh_token client', () => {
    expect(parse(doc({ refreshAt: 0.1 })).tokens[0]?.refreshAt).toBe(0.1);
    expect(parse(doc({ refreshAt: 0.95 })).tokens[0]?.refreshAt).toBe(0.95);
    const pub = parse(
      doc({ clientAuth: 'none', clientSecretFile: undefined, grant: 'refresh_token', refreshTokenFile: '/rt' }),
    );
    expect(pub.tokens[0]).toMatchObject({ clientAuth: 'none', clientSecret: undefined });
  });

  it('lets tokens share settings through YAML merge keys', () => {
    const text = [
      'tokens:',
      '  base: &defaults',
      '    issuer: https://idp.example.com',
      '    grant: client_credentials',
      '    timeout: 3s',
      '    clientId: base',
      '    clientSecretFile: /s/base',
      '  a:',
      '    <<: *defaults',
      '    clientId: a',
      '  b:',
      '    <<: *defaults',
      '    clientId: b',
      '    timeout: 4s',
    ].join('\n');
    expect(parse(text).tokens.map((t) => [t.name, t.clientId, t.timeoutMs, t.issuer])).toEqual([
      ['base', 'base', 3000, 'https://idp.example.com'],
      ['a', 'a', 3000, 'https://idp.example.com'],
      ['b', 'b', 4000, 'https://idp.example.com'],
    ]);
  });

  it('accepts a 63-character token name', () => {
    const name = `a${'b'.repeat(62)}`;
    expect(parse(stringify({ tokens: { [name]: TOKEN } })).tokens[0]?.name).toBe(name);
  });
});

describe('parseConfig: each kind of mistake gives its problem line', () => {
  it.each<[string, string, readonly string[]]>([
    ['a wrong grant', doc({ grant: 'password' }), ['tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer']],
    ['a missing grant', doc({ grant: undefined }), ['tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer']],
    ['a missing clientId', doc({ clientId: undefined }), ['tokens.orders.clientId: required']],
    ['an empty clientId', doc({ clientId: '' }), ['tokens.orders.clientId: must not be empty']],
    ['a null clientId', `${doc({ clientId: undefined })}`.replace('orders:\n', 'orders:\n    clientId:\n'), ['tokens.orders.clientId: expected a string (the value is empty)']],
    ['a numeric clientId', doc({ clientId: 42 }), ['tokens.orders.clientId: expected a string']],
    ['a typo in a key', doc({ clientSecretFile: undefined, clientSecretFil: '/s' }), [
      'tokens.orders.clientSecretFil: unknown key',
      'tokens.orders: clientSecret or clientSecretFile is required for clientAuth client_secret_basic',
    ]],
    ['an unknown top-level key', doc({}, { lisen: '127.0.0.1:1' }), ['lisen: unknown key']],
    ['both issuer and tokenEndpoint', doc({ tokenEndpoint: 'https://idp.example.com/token' }), [
      'tokens.orders.tokenEndpoint: give issuer (OIDC discovery) or tokenEndpoint (plain OAuth2), not both',
    ]],
    ['neither issuer nor tokenEndpoint', doc({ issuer: undefined }), [
      'tokens.orders: issuer (OIDC discovery) or tokenEndpoint (plain OAuth2) is required',
    ]],
    ['an issuer that is not a URL', doc({ issuer: 'idp.example.com' }), ['tokens.orders.issuer: expected an absolute http:// or https:// URL']],
    ['an ftp issuer', doc({ issuer: 'ftp://idp.example.com' }), ['tokens.orders.issuer: expected an absolute http:// or https:// URL']],
    ['credentials in a URL', doc({ issuer: 'https://user:pw@idp.example.com' }), ['tokens.orders.issuer: must not contain credentials']],
    ['http:// to a remote issuer', doc({ issuer: 'http://idp.example.com' }), [
      'tokens.orders.issuer: http:// is only allowed for loopback hosts; use https:// or set allowInsecureHttp: true',
    ]],
    ['http:// to a remote revocation endpoint next to a loopback token endpoint', doc({ issuer: undefined, tokenEndpoint: 'http://127.0.0.1/t', revocationEndpoint: 'http://idp.example.com/r' }), [
      'tokens.orders.revocationEndpoint: http:// is only allowed for loopback hosts; use https:// or set allowInsecureHttp: true',
    ]],
    ['http:// with allowInsecureHttp: false', doc({ issuer: 'http://127.0.0.1:3000', allowInsecureHttp: false }), [
      'tokens.orders.issuer: http:// URL but allowInsecureHttp is false; use https://',
    ]],
    ['clientSecret and clientSecretFile', doc({ clientSecret: 'x' }), ['tokens.orders.clientSecretFile: give clientSecret or clientSecretFile, not both']],
    ['no client secret for client_secret_post', doc({ clientSecretFile: undefined, clientAuth: 'client_secret_post' }), [
      'tokens.orders: clientSecret or clientSecretFile is required for clientAuth client_secret_post',
    ]],
    ['an unknown clientAuth', doc({ clientAuth: 'mtls' }), [
      'tokens.orders.clientAuth: expected one of client_secret_basic, client_secret_post, private_key_jwt, client_assertion, none',
    ]],
    ['private_key_jwt without a key', doc({ clientSecretFile: undefined, clientAuth: 'private_key_jwt' }), [
      'tokens.orders.privateKeyFile: required for clientAuth private_key_jwt',
    ]],
    ['private_key_jwt with a client secret', doc({ clientAuth: 'private_key_jwt', privateKeyFile: '/k' }), [
      'tokens.orders.clientSecretFile: not used with clientAuth private_key_jwt',
    ]],
    ['a private key with client_secret_basic', doc({ privateKeyFile: '/k', privateKeyAlg: 'ES256' }), [
      'tokens.orders.privateKeyFile: only used with clientAuth private_key_jwt',
      'tokens.orders.privateKeyAlg: only used with clientAuth private_key_jwt',
    ]],
    ['an unsupported privateKeyAlg', doc({ clientSecretFile: undefined, clientAuth: 'private_key_jwt', privateKeyFile: '/k', privateKeyAlg: 'HS256' }), [
      'tokens.orders.privateKeyAlg: expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519',
    ]],
    ['clientAuth none with client_credentials', doc({ clientSecretFile: undefined, clientAuth: 'none' }), [
      'tokens.orders.clientAuth: none cannot be used with grant client_credentials',
    ]],
    ['refresh_token without a seed', doc({ grant: 'refresh_token' }), [
      'tokens.orders: refreshToken or refreshTokenFile is required for grant refresh_token',
    ]],
    ['two seeds', doc({ grant: 'refresh_token', refreshToken: 'a', refreshTokenFile: '/b' }), [
      'tokens.orders.refreshTokenFile: give refreshToken or refreshTokenFile, not both',
    ]],
    ['a seed with client_credentials', doc({ refreshTokenFile: '/rt' }), ['tokens.orders.refreshTokenFile: only used with grant refresh_token']],
    ['refreshAt too small', doc({ refreshAt: 0.05 }), ['tokens.orders.refreshAt: expected a number from 0.1 to 0.95']],
    ['refreshAt too large', doc({ refreshAt: 1 }), ['tokens.orders.refreshAt: expected a number from 0.1 to 0.95']],
    ['refreshAt as text', doc({ refreshAt: 'soon' }), ['tokens.orders.refreshAt: expected a number']],
    ['a malformed timeout', doc({ timeout: '10x' }), [
      'tokens.orders.timeout: expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d',
    ]],
    ['a unitless quoted timeout', doc({ timeout: '10' }), [
      'tokens.orders.timeout: expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d',
    ]],
    ['a zero timeout', doc({ timeout: 0 }), ['tokens.orders.timeout: expected a duration above 0']],
    ['a negative timeout', doc({ timeout: -5 }), ['tokens.orders.timeout: expected a duration that is not negative']],
    ['a timeout beyond timer range', doc({ timeout: '30d' }), ['tokens.orders.timeout: expected at most 24d']],
    ['a sub-second default lifetime', doc({ defaultLifetime: '500ms' }), ['tokens.orders.defaultLifetime: expected at least 1s']],
    ['a boolean written as yes', doc({ revokeOnShutdown: 'yes' }), ['tokens.orders.revokeOnShutdown: expected true or false']],
    ['revokeOnShutdown with the redis store', doc({ revokeOnShutdown: true }, { store: { type: 'redis', url: 'redis://127.0.0.1:6379' } }), [
      'tokens.orders.revokeOnShutdown: cannot be used with store type redis: one replica stopping would revoke the token every replica shares',
    ]],
    ['a cluster prefix without a hash tag', doc({}, { store: { type: 'redis', cluster: [{ host: '127.0.0.1', port: 7000 }], prefix: 'tokend:' } }), [
      "store.prefix: with cluster, must contain a hash tag such as {tokend}: so a token's keys share a slot",
    ]],
    ['revocationEndpoint with issuer', doc({ revocationEndpoint: 'https://idp.example.com/revoke' }), [
      "tokens.orders.revocationEndpoint: only used with tokenEndpoint (discovery gives the issuer's own)",
    ]],
    ['revokeOnShutdown without a revocation endpoint', doc({ issuer: undefined, tokenEndpoint: 'https://idp.example.com/token', revokeOnShutdown: true }), [
      'tokens.orders.revocationEndpoint: required for revokeOnShutdown when tokenEndpoint is used',
    ]],
    ['a resource that is not absolute', doc({ resource: 'orders' }), ['tokens.orders.resource: expected an absolute URL without a fragment']],
    ['a resource with a fragment', doc({ resource: 'https://orders.internal/#x' }), ['tokens.orders.resource: expected an absolute URL without a fragment']],
    ['an empty scope', doc({ scope: '' }), ['tokens.orders.scope: must not be empty']],
    ['an upper-case token name', stringify({ tokens: { Orders: TOKEN } }), ['tokens.Orders: token names must match [a-z0-9][a-z0-9_.-]{0,62}']],
    ['a token name starting with a dot', stringify({ tokens: { '.hidden': TOKEN } }), ['tokens..hidden: token names must match [a-z0-9][a-z0-9_.-]{0,62}']],
    ['a 64-character token name', stringify({ tokens: { [`a${'b'.repeat(63)}`]: TOKEN } }), [
      `tokens.a${'b'.repeat(63)}: token names must match [a-z0-9][a-z0-9_.-]{0,62}`,
    ]],
    ['a token name ending in .json', stringify({ tokens: { 'orders.json': TOKEN } }), ['tokens.orders.json: token names must not end in .json']],
    ['no tokens and no verify section', 'logLevel: info\n', ['tokens: at least one token is required (unless a verify section is given)']],
    ['an empty tokens mapping', 'tokens: {}\n', ['tokens: at least one token is required (unless a verify section is given)']],
    ['tokens as a list', 'tokens: [orders]\n', ['tokens: expected a mapping']],
    ['a token that is not a mapping', 'tokens:\n  orders: yes\n', ['tokens.orders: expected a mapping']],
    ['a malformed listen address', doc({}, { listen: '8477' }), ['listen: expected host:port, [ipv6]:port or unix:/absolute/path']],
    ['metricsListen on the token port', doc({}, { listen: '127.0.0.1:8477', metricsListen: '0.0.0.0:8477' }), ['metricsListen: must differ from listen']],
    ['a six-digit listen port', doc({}, { listen: '127.0.0.1:100000' }), ['listen: expected host:port, [ipv6]:port or unix:/absolute/path']],
    ['a listen port above 65535', doc({}, { listen: '127.0.0.1:65536' }), ['listen: expected a port from 0 to 65535']],
    ['a remote listen address', doc({}, { listen: '0.0.0.0:8477' }), [
      'listen: 0.0.0.0 is not a loopback address; set allowRemote: true to listen on it',
    ]],
    ['a remote IPv6 listen address', doc({}, { listen: '[::]:8477' }), [
      'listen: :: is not a loopback address; set allowRemote: true to listen on it',
    ]],
    ['a remote host name', doc({}, { listen: 'tokend.example.com:8477', allowRemote: false }), [
      'listen: tokend.example.com is not a loopback address; set allowRemote: true to listen on it',
    ]],
    ['an unknown log level', doc({}, { logLevel: 'verbose' }), ['logLevel: expected one of fatal, error, warn, info, debug, trace']],
    ['an invalid cron expression', doc({}, { reconcile: '*/15 * *' }), [
      'reconcile: expected a node-cron expression like "*/15 * * * * *" (expected 5 or 6 fields but got 3)',
    ]],
    ['an unknown store type', doc({}, { store: { type: 's3' } }), ['store.type: expected one of memory, file, redis']],
    ['a file store without dir', doc({}, { store: { type: 'file' } }), ['store.dir: required for store type file']],
    ['a non-octal mode', doc({}, { store: { type: 'file', dir: '/t', mode: 'rw-------' } }), [
      'store.mode: expected an octal file mode like "0600" or "0640"',
    ]],
    ['a world-readable mode', doc({}, { store: { type: 'file', dir: '/t', mode: '0604' } }), [
      'store.mode: must not give other users any access (use 0600 or 0640)',
    ]],
    ['a numeric world-writable mode', doc({}, { store: { type: 'file', dir: '/t', mode: 0o602 } }), [
      'store.mode: must not give other users any access (use 0600 or 0640)',
    ]],
    ['a mode as a list', doc({}, { store: { type: 'file', dir: '/t', mode: [6, 0, 0] } }), [
      'store.mode: expected an octal file mode like "0600" or "0640"',
    ]],
    ['a file key on the memory store', doc({}, { store: { dir: '/t' } }), ['store.dir: only used with store type file']],
    ['a redis key on the file store', doc({}, { store: { type: 'file', dir: '/t', prefix: 'x:' } }), ['store.prefix: only used with store type redis']],
    ['a redis store without url', doc({}, { store: { type: 'redis' } }), [
      'store.url: required for store type redis (unless sentinels or cluster is given)',
    ]],
    ['a redis url with the wrong scheme', doc({}, { store: { type: 'redis', url: 'http://redis:6379' } }), ['store.url: expected a redis:// or rediss:// URL']],
    ['sentinels without a name', doc({}, { store: { type: 'redis', sentinels: [{ host: 's', port: 26379 }] } }), ['store.sentinelName: required with sentinels']],
    ['a sentinel name without sentinels', doc({}, { store: { type: 'redis', url: 'redis://r', sentinelName: 'm' } }), ['store.sentinelName: only used with sentinels']],
    ['sentinels and cluster', doc({}, { store: { type: 'redis', sentinels: [{ host: 's', port: 1 }], sentinelName: 'm', cluster: [{ host: 'c', port: 2 }] } }), [
      'store.cluster: give sentinels or cluster, not both',
    ]],
    ['an empty cluster', doc({}, { store: { type: 'redis', cluster: [] } }), [
      'store.cluster: expected at least one cluster node',
    ]],
    ['a bad sentinel port', doc({}, { store: { type: 'redis', sentinels: [{ host: 's', port: 0 }, { host: 's', port: 'x' }], sentinelName: 'm' } }), [
      'store.sentinels[0].port: expected a port from 1 to 65535',
      'store.sentinels[1].port: expected a number',
    ]],
    ['an unknown key in a sentinel', doc({}, { store: { type: 'redis', sentinels: [{ host: 's', port: 1, tls: true }], sentinelName: 'm' } }), [
      'store.sentinels[0].tls: unknown key',
    ]],
    ['password and passwordFile', doc({}, { store: { type: 'redis', url: 'redis://r', password: 'a', passwordFile: '/b' } }), [
      'store.passwordFile: give password or passwordFile, not both',
    ]],
    ['a lease under a second', doc({}, { store: { type: 'redis', url: 'redis://r', lease: '10ms' } }), ['store.lease: expected at least 1s']],
    ['a top level that is a list', '- tokens\n', ['config: expected a mapping']],
    ['an empty file', '', ['config: expected a mapping (the value is empty)']],
  ])('%s', (_what, text, expected) => {
    expect(problemsOf(text)).toEqual(expected);
  });
});

describe('parseConfig: verify section', () => {
  const verify = (issuer: Record<string, unknown>, more: Record<string, unknown> = {}): string =>
    stringify({ verify: { issuers: [{ issuer: 'https://idp.example.com', audience: 'api', ...issuer }], ...more } });

  it.each<[string, string, readonly string[]]>([
    ['a missing audience', verify({ audience: undefined }), ['verify.issuers[0].audience: required']],
    ['an empty audience list', verify({ audience: [] }), ['verify.issuers[0].audience: expected an audience or a non-empty list of audiences']],
    ['a numeric audience', verify({ audience: [5] }), ['verify.issuers[0].audience: expected an audience or a non-empty list of audiences']],
    ['no issuers', stringify({ verify: { issuers: [] } }), ['verify.issuers: expected at least one issuer']],
    ['algorithm none', verify({ algorithms: ['RS256', 'none'] }), ['verify.issuers[0].algorithms[1]: none is never allowed']],
    ['algorithm NONE', verify({ algorithms: ['NONE'] }), ['verify.issuers[0].algorithms[0]: none is never allowed']],
    ['HS256 without a secret', verify({ algorithms: ['HS256'] }), ['verify.issuers[0].algorithms[0]: HS256 needs hmacSecret or hmacSecretFile']],
    ['an HMAC secret without an HS algorithm', verify({ hmacSecretFile: '/h' }), [
      'verify.issuers[0].hmacSecretFile: only used when algorithms lists HS256, HS384 or HS512',
    ]],
    ['two HMAC secrets', verify({ algorithms: ['HS512'], hmacSecret: 'a', hmacSecretFile: '/b' }), [
      'verify.issuers[0].hmacSecretFile: give hmacSecret or hmacSecretFile, not both',
    ]],
    ['an unknown algorithm', verify({ algorithms: ['RS255'] }), [
      'verify.issuers[0].algorithms[0]: expected one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519, HS256, HS384, HS512',
    ]],
    ['an empty algorithm list', verify({ algorithms: [] }), ['verify.issuers[0].algorithms: expected at least one algorithm']],
    ['a malformed clock tolerance', verify({ clockTolerance: 'a while' }), [
      'verify.issuers[0].clockTolerance: expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d',
    ]],
    ['introspection without a secret', verify({ introspection: { clientId: 'api' } }), [
      'verify.issuers[0].introspection: clientSecret or clientSecretFile is required for introspection',
    ]],
    ['introspection with an unsupported clientAuth', verify({ introspection: { clientId: 'api', clientSecret: 's', clientAuth: 'private_key_jwt' } }), [
      'verify.issuers[0].introspection.clientAuth: expected client_secret_basic or client_secret_post',
    ]],
    ['http:// to a remote issuer', verify({ issuer: 'http://idp.example.com' }), [
      'verify.issuers[0].issuer: http:// is only allowed for loopback hosts; use https:// or set allowInsecureHttp: true',
    ]],
    ['a duplicate issuer', stringify({ verify: { issuers: [{ issuer: 'https://a.example', audience: 'x' }, { issuer: 'https://a.example', audience: 'y' }] } }), [
      'verify.issuers[1].issuer: duplicate issuer',
    ]],
    ['an unknown key', verify({ audiences: ['x'] }), ['verify.issuers[0].audiences: unknown key']],
    ['an unknown key under verify', verify({}, { jwks: 'x' }), ['verify.jwks: unknown key']],
  ])('%s', (_what, text, expected) => {
    expect(problemsOf(text)).toEqual(expected);
  });

  it('resolves HS256 with a secret file and the http:// loopback default', () => {
    const config = parse(verify({ issuer: 'http://127.0.0.1:4000', algorithms: ['HS256', 'RS256'], hmacSecretFile: '/h', clockTolerance: '2m' }));
    expect(config.verify?.issuers[0]).toMatchObject({
      algorithms: ['HS256', 'RS256'],
      hmacSecret: { kind: 'file', path: '/h' },
      clockToleranceSec: 120,
      allowInsecureHttp: true,
    });
  });
});

describe('parseConfig: every problem is reported at once', () => {
  it('collects problems from different tokens, the store and the top level in one error', () => {
    const text = stringify({
      listen: '0.0.0.0:8477',
      logLevel: 'loud',
      store: { type: 'file', mode: '0666' },
      tokens: {
        orders: { ...TOKEN, grant: 'implicit', timeout: 'forever' },
        billing: { clientId: 'b', clientSecret: 'x', grant: 'client_credentials', scopes: 'a' },
      },
    });
    const problems = problemsOf(text);
    expect([...problems].sort()).toEqual(
      [
        'listen: 0.0.0.0 is not a loopback address; set allowRemote: true to listen on it',
        'logLevel: expected one of fatal, error, warn, info, debug, trace',
        'store.mode: must not give other users any access (use 0600 or 0640)',
        'store.dir: required for store type file',
        'tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer',
        'tokens.orders.timeout: expected a duration: seconds as a number, or a string like 500ms, 10s, 5m, 1h, 2d',
        'tokens.billing.scopes: unknown key',
        'tokens.billing: issuer (OIDC discovery) or tokenEndpoint (plain OAuth2) is required',
      ].sort(),
    );
  });

  it('puts one problem on each line of the message, with no stack trace', () => {
    const err = errorOf(doc({ grant: 'x', clientId: '' }));
    expect(err.message.split('\n')).toEqual([
      'tokens.orders.clientId: must not be empty',
      'tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer',
    ]);
    expect(err.message).not.toMatch(/\bat .*\.(ts|js):\d+/);
  });

  it('checks the fields of a token whose name is also wrong', () => {
    expect(problemsOf(stringify({ tokens: { Orders: { ...TOKEN, grant: 'x' } } }))).toEqual([
      'tokens.Orders: token names must match [a-z0-9][a-z0-9_.-]{0,62}',
      'tokens.Orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer',
    ]);
  });
});

describe('parseConfig: command-line overrides', () => {
  it('replaces listen and logLevel from the file', () => {
    const config = parseConfig(doc({}, { listen: '127.0.0.1:1', logLevel: 'warn' }), {
      env: {},
      overrides: { listen: 'unix:/run/t.sock', logLevel: 'trace' },
    });
    expect(config.listen).toEqual({ kind: 'unix', path: '/run/t.sock' });
    expect(config.logLevel).toBe('trace');
  });

  it('validates overrides like file values, naming the field', () => {
    try {
      parseConfig(doc(), { env: {}, overrides: { listen: '0.0.0.0:8477', logLevel: 'loud' } });
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([
        'logLevel: expected one of fatal, error, warn, info, debug, trace',
        'listen: 0.0.0.0 is not a loopback address; set allowRemote: true to listen on it',
      ]);
    }
  });

  it('leaves the file alone when an override is undefined', () => {
    const config = parseConfig(doc({}, { logLevel: 'warn' }), { env: {}, overrides: { listen: undefined } });
    expect(config.logLevel).toBe('warn');
  });
});

describe('parseConfig: syntax errors', () => {
  it('gives line and column of a YAML syntax error, with the file name', () => {
    const text = 'tokens:\n  orders:\n    clientId: [a, b\n    grant: x\n';
    expect(problemsOf(text, {}, '/etc/tokend.yaml')).toEqual([
      '/etc/tokend.yaml: line 4, column 5: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
  });

  it('reports duplicate keys (a second token with the same name)', () => {
    const text = `tokens:\n  orders:\n    clientId: a\n  orders:\n    clientId: b\n`;
    expect(problemsOf(text)).toEqual(['line 4, column 3: Map keys must be unique']);
  });

  it('refuses more than one YAML document', () => {
    expect(problemsOf(`${doc()}---\nlogLevel: info\n`)).toEqual([
      'line 7, column 1: the file holds more than one YAML document',
    ]);
  });

  it('refuses unknown tags instead of guessing a type', () => {
    expect(problemsOf(`${doc()}logLevel: !env LEVEL\n`)).toEqual(['line 7, column 11: Unresolved tag: !env']);
  });

  it('reads .json files strictly', () => {
    expect(problemsOf('{"tokens": {"orders": {"clientId": x}}}', {}, 'c.json')).toEqual([
      'c.json: line 1, column 36: Unresolved plain scalar',
    ]);
  });

  it('refuses alias bombs', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 8; i++) {
      const prev = String.fromCharCode(97 + i);
      const next = String.fromCharCode(98 + i);
      bomb.push(`${next}: &${next} [*${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}, *${prev}]`);
    }
    expect(problemsOf(bomb.join('\n'))).toEqual(['config: too many or circular YAML aliases']);
  });
});

describe('parseConfig: secrets never appear in errors', () => {
  const SECRET = 'Sup3r-S3cret-Value-4711';

  it.each<[string, string, Env]>([
    ['a secret of the wrong type', doc({ clientSecretFile: undefined, clientSecret: [SECRET] }), {}],
    ['a secret next to clientSecretFile', doc({ clientSecret: SECRET }), {}],
    ['a secret with an unterminated ${', doc({ clientSecretFile: undefined, clientSecret: `${SECRET}\${oops` }), {}],
    ['a secret with a malformed ${...}', doc({ clientSecretFile: undefined, clientSecret: `\${${SECRET} x}` }), {}],
    ['a secret not used by private_key_jwt', doc({ clientSecretFile: undefined, clientSecret: SECRET, clientAuth: 'private_key_jwt', privateKeyFile: '/k' }), {}],
    ['a seed refresh token with client_credentials', doc({ refreshToken: SECRET }), {}],
    ['a secret from the environment that breaks a URL', doc({ issuer: 'https://x:${PW}@idp.example.com' }), { PW: SECRET }],
    ['a Redis URL carrying a password', doc({}, { store: { type: 'redis', url: `http://:${SECRET}@redis` } }), {}],
    ['a YAML syntax error on a secret line', `tokens:\n  orders:\n    clientSecret: "${SECRET}"\n    clientId: x\n  "${SECRET}" ${SECRET}: y\n`, {}],
    ['a YAML stream error after a secret', `- a\n${SECRET}: ${SECRET}\n`, {}],
    ['an unknown key holding a secret', doc({ clientSecrett: SECRET }), {}],
    ['a secret as a token value with a bad name', stringify({ tokens: { BAD: { ...TOKEN, clientSecret: SECRET } } }), {}],
    ['a non-string password', doc({}, { store: { type: 'redis', url: 'redis://r', password: { v: SECRET } } }), {}],
  ])('%s', (_what, text, env) => {
    const err = errorOf(text, env);
    expect(err.problems.length).toBeGreaterThan(0);
    expect(err.message).not.toContain(SECRET);
    expect(err.problems.join('\n')).not.toContain(SECRET);
    expect(JSON.stringify(err)).not.toContain(SECRET);
  });

  it('does not echo a secret from a strictly read .json file', () => {
    const err = errorOf(`{"tokens": {"orders": {"clientSecret": ${SECRET}}}}`, {}, 'c.json');
    expect(err.message).not.toContain(SECRET);
  });
});
