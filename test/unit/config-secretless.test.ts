/**
 * The secretless settings (docs/secretless.md) as the config parser sees them: clientAuth
 * client_assertion, grant token_exchange and grant jwt_bearer, what they default to, what they
 * refuse, and that their files are checked at start-up and watched like every credential file.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { checkSecretFiles, secretFiles } from '../../src/config/secrets.js';
import { ConfigError } from '../../src/errors.js';
import { credentialFiles } from '../../src/refresh/credentials.js';
import { grantKeyOf } from '../../src/refresh/policy.js';
import { decodeMeta, encodeMeta } from '../../src/store/codec.js';

const SA_TOKEN = '/var/run/secrets/tokens/tokend';
const TT_JWT = 'urn:ietf:params:oauth:token-type:jwt';
const TT_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

/** A YAML document with the given tokens (JSON is valid YAML). */
const docOf = (tokens: Record<string, Record<string, unknown>>): string => JSON.stringify({ tokens });
const ISSUER = { issuer: 'https://idp.example.com/realms/prod' };

function problemsOf(tokens: Record<string, Record<string, unknown>>): readonly string[] {
  try {
    parseConfig(docOf(tokens), { env: {} });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}

const assertionToken = { ...ISSUER, clientId: 'orders', clientAuth: 'client_assertion', clientAssertionFile: SA_TOKEN, grant: 'client_credentials' };

describe('the secretless settings parse, with no secret anywhere', () => {
  it('accepts a client assertion, a token exchange of another token, and a JWT bearer grant without client_id', () => {
    const config = parseConfig(
      docOf({
        orders: assertionToken,
        narrow: { ...ISSUER, clientId: 'exchanger', clientAuth: 'none', grant: 'token_exchange', subjectToken: 'orders', audience: 'orders-api' },
        gcp: { tokenEndpoint: 'https://sts.googleapis.com/v1/token', clientAuth: 'none', grant: 'token_exchange', subjectTokenFile: SA_TOKEN, audience: '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/k', scope: 'https://www.googleapis.com/auth/cloud-platform', requestedTokenType: TT_ACCESS },
        batch: { ...ISSUER, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: SA_TOKEN },
      }),
      { env: {} },
    );
    const [orders, narrow, gcp, batch] = config.tokens;
    expect(orders).toMatchObject({ clientAuth: 'client_assertion', clientAssertionFile: SA_TOKEN, clientId: 'orders' });
    expect(orders?.clientSecret).toBeUndefined();
    // subjectToken: NAME defaults to an access token; a file to a JWT.
    expect(narrow).toMatchObject({ grant: 'token_exchange', subjectToken: 'orders', subjectTokenType: TT_ACCESS, audience: 'orders-api' });
    expect(gcp).toMatchObject({ subjectTokenFile: SA_TOKEN, subjectTokenType: TT_JWT, requestedTokenType: TT_ACCESS });
    expect(gcp?.clientId).toBeUndefined();
    expect(batch).toMatchObject({ grant: 'jwt_bearer', assertionFile: SA_TOKEN });
    expect(batch?.clientId).toBeUndefined();
  });

  it('defaults actorTokenType to a JWT when actorTokenFile is given, and keeps an explicit subjectTokenType', () => {
    const [t] = parseConfig(
      docOf({ x: { ...ISSUER, clientId: 'c', clientAuth: 'client_assertion', clientAssertionFile: SA_TOKEN, grant: 'token_exchange', subjectTokenFile: '/s', subjectTokenType: 'urn:example:token-type:opaque', actorTokenFile: '/a' } }),
      { env: {} },
    ).tokens;
    expect(t).toMatchObject({ subjectTokenType: 'urn:example:token-type:opaque', actorTokenFile: '/a', actorTokenType: TT_JWT });
  });
});

describe('what the secretless settings refuse', () => {
  it.each([
    ['client_assertion without its file', { ...assertionToken, clientAssertionFile: undefined }, ['tokens.orders.clientAssertionFile: required for clientAuth client_assertion']],
    ['client_assertion with a client secret file', { ...assertionToken, clientSecretFile: '/s' }, ['tokens.orders.clientSecretFile: not used with clientAuth client_assertion']],
    ['client_assertion with a literal client secret', { ...assertionToken, clientSecret: 'x' }, ['tokens.orders.clientSecret: not used with clientAuth client_assertion']],
    ['client_assertion with a private key', { ...assertionToken, privateKeyFile: '/k' }, ['tokens.orders.privateKeyFile: only used with clientAuth private_key_jwt']],
    ['a client assertion file with another clientAuth', { ...ISSUER, clientId: 'c', clientSecretFile: '/s', grant: 'client_credentials', clientAssertionFile: SA_TOKEN }, ['tokens.orders.clientAssertionFile: only used with clientAuth client_assertion']],
    ['jwt_bearer without its assertion', { ...ISSUER, clientAuth: 'none', grant: 'jwt_bearer' }, ['tokens.orders.assertionFile: required for grant jwt_bearer']],
    ['an assertion file with another grant', { ...assertionToken, assertionFile: SA_TOKEN }, ['tokens.orders.assertionFile: only used with grant jwt_bearer']],
    ['token_exchange without a subject', { ...assertionToken, grant: 'token_exchange' }, ['tokens.orders: subjectTokenFile or subjectToken is required for grant token_exchange']],
    ['token_exchange with two subjects', { ...assertionToken, grant: 'token_exchange', subjectTokenFile: '/s', subjectToken: 'x' }, ['tokens.orders.subjectToken: give subjectTokenFile or subjectToken, not both', 'tokens.orders.subjectToken: names no configured token ("x")']],
    ['subject settings with another grant', { ...assertionToken, subjectTokenFile: '/s', requestedTokenType: TT_ACCESS }, ['tokens.orders.subjectTokenFile: only used with grant token_exchange', 'tokens.orders.requestedTokenType: only used with grant token_exchange']],
    ['an actor token type without an actor token', { ...assertionToken, grant: 'token_exchange', subjectTokenFile: '/s', actorTokenType: TT_JWT }, ['tokens.orders.actorTokenType: only used with actorTokenFile']],
    ['a token type that is not a URI', { ...assertionToken, grant: 'token_exchange', subjectTokenFile: '/s', subjectTokenType: 'jwt' }, ['tokens.orders.subjectTokenType: expected a token type URI, e.g. urn:ietf:params:oauth:token-type:jwt']],
    ['a refresh token with token_exchange', { ...assertionToken, grant: 'token_exchange', subjectTokenFile: '/s', refreshTokenFile: '/r' }, ['tokens.orders.refreshTokenFile: only used with grant refresh_token']],
    ['no clientId with client_credentials', { ...assertionToken, clientId: undefined }, ['tokens.orders.clientId: required']],
    ['no clientId with an authenticated token exchange', { ...assertionToken, clientId: undefined, grant: 'token_exchange', subjectTokenFile: '/s' }, ['tokens.orders.clientId: required (it may be left out only with clientAuth none)']],
    ['clientAuth none with client_credentials', { ...ISSUER, clientId: 'c', clientAuth: 'none', grant: 'client_credentials' }, ['tokens.orders.clientAuth: none cannot be used with grant client_credentials']],
  ])('%s', (_what, token, expected) => {
    expect(problemsOf({ orders: token as Record<string, unknown> })).toEqual(expected);
  });

  it('refuses a subjectToken naming the token itself, an unknown token, or a cycle', () => {
    const exchange = (subjectToken: string) => ({ ...ISSUER, clientId: 'c', clientAuth: 'none', grant: 'token_exchange', subjectToken });
    expect(problemsOf({ orders: exchange('orders') })).toEqual(['tokens.orders.subjectToken: names this token itself; give another configured token']);
    expect(problemsOf({ orders: exchange('nope') })).toEqual(['tokens.orders.subjectToken: names no configured token ("nope")']);
    expect(problemsOf({ a: exchange('b'), b: exchange('c'), c: exchange('a'), d: exchange('a') })).toEqual([
      'tokens.a.subjectToken: forms a cycle (a → b → c → a): no token in it could ever be exchanged',
      'tokens.b.subjectToken: forms a cycle (b → c → a → b): no token in it could ever be exchanged',
      'tokens.c.subjectToken: forms a cycle (c → a → b → c): no token in it could ever be exchanged',
    ]);
  });
});

describe('the secretless files are credential files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokend-secretless-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('are checked at start-up and by `tokend check`: a missing projected token is a clear error naming the field and path', async () => {
    const missing = join(dir, 'token');
    const config = parseConfig(
      docOf({
        orders: { ...assertionToken, clientAssertionFile: missing },
        batch: { ...ISSUER, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: missing },
        gcp: { ...ISSUER, clientAuth: 'none', grant: 'token_exchange', subjectTokenFile: missing, actorTokenFile: missing },
      }),
      { env: {} },
    );
    expect(secretFiles(config).map((f) => f.field)).toEqual([
      'tokens.orders.clientAssertionFile',
      'tokens.batch.assertionFile',
      'tokens.gcp.subjectTokenFile',
      'tokens.gcp.actorTokenFile',
    ]);
    expect(await checkSecretFiles(config)).toEqual([
      `tokens.orders.clientAssertionFile: secret file ${missing} does not exist`,
      `tokens.batch.assertionFile: secret file ${missing} does not exist`,
      `tokens.gcp.subjectTokenFile: secret file ${missing} does not exist`,
      `tokens.gcp.actorTokenFile: secret file ${missing} does not exist`,
    ]);
  });

  it('are watched, so that kubelet rotating the projected token triggers a reconcile', () => {
    const [t] = parseConfig(docOf({ x: { ...ISSUER, clientId: 'c', clientAuth: 'client_assertion', clientAssertionFile: '/ca', grant: 'token_exchange', subjectTokenFile: '/s', actorTokenFile: '/a' } }), { env: {} }).tokens;
    expect(credentialFiles(t!)).toEqual(['/ca', '/s', '/a']);
    const [b] = parseConfig(docOf({ x: { ...ISSUER, clientAuth: 'none', grant: 'jwt_bearer', assertionFile: '/as' } }), { env: {} }).tokens;
    expect(credentialFiles(b!)).toEqual(['/as']);
  });
});

describe('the grant fingerprint and the stored metadata', () => {
  it('keeps the fingerprint of every existing kind of token unchanged, and tells federated subjects apart', () => {
    const cc = { issuer: 'https://idp', clientId: 'c', grant: 'client_credentials' as const, scope: 's', audience: 'a' };
    const before = createHash('sha256').update(JSON.stringify(['https://idp', '', 'c', 'client_credentials', 's', '', 'a'])).digest('hex').slice(0, 32);
    expect(grantKeyOf(cc)).toBe(before);
    const fromOrders = grantKeyOf({ ...cc, grant: 'token_exchange', subjectToken: 'orders', subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token' });
    const fromReports = grantKeyOf({ ...cc, grant: 'token_exchange', subjectToken: 'reports', subjectTokenType: 'urn:ietf:params:oauth:token-type:access_token' });
    expect(fromOrders).not.toBe(fromReports);
  });

  it('stores issued_token_type in the metadata document and reads it back; refuses one that is not a short printable URI', () => {
    const token = { accessToken: 'at', tokenType: 'Bearer', obtainedAt: 1_700_000_000_000, expiresAt: 1_700_000_060_000, issuedTokenType: TT_ACCESS };
    const text = encodeMeta(token);
    expect(JSON.parse(text)).toMatchObject({ issued_token_type: TT_ACCESS });
    expect(decodeMeta(text).issuedTokenType).toBe(TT_ACCESS);
    expect(JSON.parse(encodeMeta({ ...token, issuedTokenType: undefined }))).not.toHaveProperty('issued_token_type');
    const bad = JSON.stringify({ ...JSON.parse(text), issued_token_type: 'has spaces in it' });
    expect(() => decodeMeta(bad)).toThrow(/issued_token_type/);
  });
});
