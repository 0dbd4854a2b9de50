import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { interpolate, parseConfig, type Env } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const ok = (text: string, env: Env = {}): string => {
  const r = interpolate(text, env);
  if (!r.ok) throw new Error(`unexpected problem: ${r.problem}`);
  return r.value;
};
const problem = (text: string, env: Env = {}): string => {
  const r = interpolate(text, env);
  if (r.ok) throw new Error('expected a problem');
  return r.problem;
};

describe('interpolate', () => {
  it.each<[string, Env, string]>([
    ['${A}', { A: 'x' }, 'x'],
    ['pre-${A}-post', { A: 'x' }, 'pre-x-post'],
    ['${A}${B}', { A: '1', B: '2' }, '12'],
    ['${A}', { A: '' }, ''],
    ['${A_1}', { A_1: 'v' }, 'v'],
    ['${_a}', { _a: 'lower' }, 'lower'],
    ['no references', {}, 'no references'],
  ])('replaces %j', (text, env, value) => {
    expect(ok(text, env)).toBe(value);
  });

  it.each<[string, Env, string]>([
    ['${A:-fallback}', {}, 'fallback'],
    ['${A:-fallback}', { A: '' }, 'fallback'],
    ['${A:-fallback}', { A: 'set' }, 'set'],
    ['${A:-}', {}, ''],
    ['${A:-http://x:1/y}', {}, 'http://x:1/y'],
    ['${A:-a b $ c}', {}, 'a b $ c'],
  ])('uses the default in %j when the variable is unset or empty', (text, env, value) => {
    expect(ok(text, env)).toBe(value);
  });

  it.each<[string, string]>([
    ['$${A}', '${A}'],
    ['$$', '$'],
    ['a$$b', 'a$b'],
    ['$$$${A}', '$${A}'],
    ['price: 5$', 'price: 5$'],
    ['pa$word', 'pa$word'],
    ['$A', '$A'],
    ['$', '$'],
  ])('keeps a literal dollar in %j', (text, value) => {
    expect(ok(text, { A: 'x' })).toBe(value);
  });

  it('does not interpolate twice (a value holding ${B} stays literal)', () => {
    expect(ok('${A}', { A: '${B}', B: 'no' })).toBe('${B}');
    expect(ok('$${A}', { A: 'no' })).toBe('${A}');
  });

  it('names the variable that is not set', () => {
    expect(problem('x-${ORDERS_SECRET}', {})).toBe('environment variable ORDERS_SECRET is not set');
  });

  it('refuses an unterminated or malformed reference without echoing it', () => {
    expect(problem('abc${A')).toBe('unterminated ${ (write $$ for a literal $)');
    expect(problem('${1A}')).toBe('expected ${NAME} or ${NAME:-default} (write $$ for a literal $)');
    expect(problem('${A B}')).toBe('expected ${NAME} or ${NAME:-default} (write $$ for a literal $)');
    expect(problem('${}')).toBe('expected ${NAME} or ${NAME:-default} (write $$ for a literal $)');
    expect(problem('${A-x}')).toBe('expected ${NAME} or ${NAME:-default} (write $$ for a literal $)');
  });

  it('leaves every string without $ unchanged', () => {
    fc.assert(fc.property(fc.string().filter((s) => !s.includes('$')), (s) => ok(s) === s));
  });

  it('gives back any text whose dollars are escaped as $$', () => {
    fc.assert(fc.property(fc.string(), (s) => ok(s.replaceAll('$', () => '$$'), { A: 'x' }) === s));
  });

  it('inserts any variable value verbatim', () => {
    fc.assert(fc.property(fc.string(), fc.string(), (pre, value) => ok(`${pre.replaceAll('$', () => '$$')}\${V}`, { V: value }) === pre + value));
  });
});

describe('parseConfig interpolation', () => {
  const TOKEN = {
    issuer: '${ISSUER}',
    clientId: '${CLIENT_ID:-orders-client}',
    clientSecret: '${ORDERS_SECRET}',
    grant: 'client_credentials',
  };
  const text = (token: Record<string, unknown> = {}, top: Record<string, unknown> = {}): string =>
    stringify({ tokens: { orders: { ...TOKEN, ...token } }, ...top });
  const env = { ISSUER: 'https://idp.example.com', ORDERS_SECRET: 's3cret' };

  const problems = (t: string, e: Env): readonly string[] => {
    try {
      parseConfig(t, { env: e });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as ConfigError).problems;
    }
    throw new Error('expected the configuration to be refused');
  };

  it('replaces values from the environment, with defaults', () => {
    const token = parseConfig(text(), { env }).tokens[0];
    expect(token).toMatchObject({
      issuer: 'https://idp.example.com',
      clientId: 'orders-client',
      clientSecret: { kind: 'literal', value: 's3cret' },
    });
  });

  it('names the variable and the field when a variable is unset, and only that', () => {
    expect(problems(text(), { ISSUER: 'https://idp.example.com' })).toEqual([
      'tokens.orders.clientSecret: environment variable ORDERS_SECRET is not set',
    ]);
  });

  it('reports every unset variable at once, in file order, without a second complaint about the same field', () => {
    expect(problems(text({ refreshAt: '${RA}' }, { listen: '${LISTEN}' }), {})).toEqual([
      'tokens.orders.issuer: environment variable ISSUER is not set',
      'tokens.orders.clientSecret: environment variable ORDERS_SECRET is not set',
      'tokens.orders.refreshAt: environment variable RA is not set',
      'listen: environment variable LISTEN is not set',
    ]);
  });

  it('keeps a literal ${...} written as $${...}', () => {
    const token = parseConfig(text({ clientSecret: 'a$${NOT_A_VAR}b$$c' }), { env }).tokens[0];
    expect(token?.clientSecret).toEqual({ kind: 'literal', value: 'a${NOT_A_VAR}b$c' });
  });

  it('reads numbers, booleans and durations from variables', () => {
    const config = parseConfig(
      text({ refreshAt: '${RA}', revokeOnShutdown: '${REVOKE}', timeout: '${TIMEOUT}' }, { allowRemote: '${REMOTE}', listen: '0.0.0.0:${PORT}' }),
      { env: { ...env, RA: '0.5', REVOKE: 'true', TIMEOUT: '3s', REMOTE: 'true', PORT: '9000' } },
    );
    expect(config.tokens[0]).toMatchObject({ refreshAt: 0.5, revokeOnShutdown: true, timeoutMs: 3000 });
    expect(config.allowRemote).toBe(true);
    expect(config.listen).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 9000 });
  });

  it('validates an interpolated value like a written one', () => {
    expect(problems(text({ refreshAt: '${RA}' }), { ...env, RA: 'high' })).toEqual([
      'tokens.orders.refreshAt: expected a number',
    ]);
    expect(problems(text(), { ...env, ISSUER: 'http://idp.example.com' })).toEqual([
      'tokens.orders.issuer: http:// is only allowed for loopback hosts; use https:// or set allowInsecureHttp: true',
    ]);
  });

  it('interpolates inside lists and nested sections', () => {
    const config = parseConfig(
      stringify({ verify: { issuers: [{ issuer: '${ISSUER}', audience: ['${AUD}', 'fixed'] }] } }),
      { env: { ISSUER: 'https://idp.example.com', AUD: 'orders-api' } },
    );
    expect(config.verify?.issuers[0]?.audience).toEqual(['orders-api', 'fixed']);
  });

  it('names list positions of unset variables', () => {
    expect(problems(stringify({ verify: { issuers: [{ issuer: 'https://a.example', audience: ['x', '${AUD}'] }] } }), {})).toEqual([
      'verify.issuers[0].audience[1]: environment variable AUD is not set',
    ]);
  });

  it('does not interpolate keys', () => {
    expect(problems(stringify({ tokens: { '${NAME}': TOKEN } }), { ...env, NAME: 'orders' })).toEqual([
      'tokens.${NAME}: token names must match [a-z0-9][a-z0-9_.-]{0,62}',
    ]);
  });

  it('does not let overrides be interpolated', () => {
    const config = parseConfig(text(), { env: { ...env, L: 'x' }, overrides: { listen: 'unix:/run/${L}.sock' } });
    expect(config.listen).toEqual({ kind: 'unix', path: '/run/${L}.sock' });
  });

  it('keeps a __proto__ key as an unknown key rather than a prototype', () => {
    const yamlText = `${text()}__proto__:\n  polluted: true\n`;
    expect(problems(yamlText, env)).toEqual(['__proto__: unknown key']);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});

describe('parseConfig interpolation at scale (the test timeout is the only bound)', () => {
  it('reports 20,000 unset variables in 20,000 tokens, each once, with their other problems', () => {
    // Each token has one unset variable (which silences the schema's complaint about the same field)
    // and three other schema problems: matching problems to failed fields must not be quadratic.
    const n = 20_000;
    let text = 'tokens:\n';
    for (let i = 0; i < n; i++) text += `  t${i}: {tokenEndpoint: "\${UNSET_${i}}"}\n`;
    let problems: readonly string[] = [];
    try {
      parseConfig(text, { env: {} });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      problems = (err as ConfigError).problems;
    }
    expect(problems).toHaveLength(4 * n);
    expect(problems.filter((p) => p.includes('is not set'))).toHaveLength(n);
    expect(problems).toContain(`tokens.t${n - 1}.tokenEndpoint: environment variable UNSET_${n - 1} is not set`);
    expect(problems).toContain(`tokens.t${n - 1}.clientId: required`);
    expect(problems.some((p) => p.startsWith(`tokens.t${n - 1}.tokenEndpoint: expected`))).toBe(false);
  });
});
