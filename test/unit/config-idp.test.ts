import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { problemsOf } from '../support/config-problems.js';

const base = (token: string, top = ''): string => `${top}
tokens:
  orders:
    grant: client_credentials
    clientId: orders
${token}`;

describe('config: privateKeyAudience and idpConcurrency', () => {
  it('reads privateKeyAudience for private_key_jwt (absent: the token endpoint, applied when signing)', () => {
    const pk = (aud: string) =>
      parseConfig(base(`    issuer: https://idp.example.com\n    clientAuth: private_key_jwt\n    privateKeyFile: /k.pem\n${aud}`), { env: {} }).tokens[0];
    expect(pk('    privateKeyAudience: issuer\n')?.privateKeyAudience).toBe('issuer');
    expect(pk('    privateKeyAudience: token_endpoint\n')?.privateKeyAudience).toBe('token_endpoint');
    expect(pk('')?.privateKeyAudience).toBeUndefined();
  });

  it('refuses privateKeyAudience without private_key_jwt, an unknown value, and issuer with a static tokenEndpoint', () => {
    expect(problemsOf(base('    issuer: https://idp.example.com\n    clientSecret: s\n    privateKeyAudience: issuer\n'))).toEqual([
      'tokens.orders.privateKeyAudience: only used with clientAuth private_key_jwt',
    ]);
    expect(problemsOf(base('    issuer: https://idp.example.com\n    clientAuth: private_key_jwt\n    privateKeyFile: /k.pem\n    privateKeyAudience: aud\n'))).toEqual([
      'tokens.orders.privateKeyAudience: expected token_endpoint or issuer',
    ]);
    expect(
      problemsOf(base('    tokenEndpoint: https://idp.example.com/token\n    clientAuth: private_key_jwt\n    privateKeyFile: /k.pem\n    privateKeyAudience: issuer\n')),
    ).toEqual(['tokens.orders.privateKeyAudience: issuer needs an issuer (OIDC discovery); with tokenEndpoint the audience is the token endpoint']);
  });

  it('reads idpConcurrency (absent: the registry default, 4) and refuses values outside 1..64', () => {
    const tok = '    issuer: https://idp.example.com\n    clientSecret: s\n';
    expect(parseConfig(base(tok, 'idpConcurrency: 16'), { env: {} }).idpConcurrency).toBe(16);
    expect(parseConfig(base(tok), { env: {} }).idpConcurrency).toBeUndefined();
    expect(problemsOf(base(tok, 'idpConcurrency: 0'))).toEqual(['idpConcurrency: expected at least 1']);
    expect(problemsOf(base(tok, 'idpConcurrency: 2.5'))).toEqual(['idpConcurrency: expected a whole number from 1 to 64']);
  });
});
