import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { parseRedisUrl } from '../../src/config/fields.js';
import { ConfigError, TokendError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { RedisStore } from '../../src/store/redis/store.js';

// Issue 10.12: `tokend check` accepted a Redis URL that `tokend run` refused. One parser
// (config/fields.ts parseRedisUrl) now serves the schema and the store.

const logger = createLogger('fatal', { write: () => undefined });

function configWith(url: string): string {
  return stringify({
    store: { type: 'redis', url },
    tokens: { orders: { issuer: 'https://idp.example.com', clientId: 'c', clientSecret: 's', grant: 'client_credentials' } },
  });
}

/** What `tokend check` says about url: undefined when accepted, else the store.url problem. */
function checkSays(url: string): string | undefined {
  try {
    parseConfig(configWith(url), { env: {} });
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.find((p) => p.startsWith('store.url'));
  }
}

/** What the store (`tokend run`) says about url: undefined when accepted, else its message. */
function runSays(url: string): string | undefined {
  try {
    void new RedisStore({ url, prefix: 'tokend:', leaseMs: 15_000, logger }).close();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('CONFIG_INVALID');
    return (err as TokendError).message;
  }
}

describe('one Redis URL parser for check and run', () => {
  it('refuses a URL whose path is not a database number in check, as run does (check used to accept it)', () => {
    const url = 'redis://127.0.0.1:6379/orders';
    expect(checkSays(url)).toBe('store.url: the path of a redis URL must be a database number, like /0');
    expect(runSays(url)).toBe('store.url: the path of a redis URL must be a database number, like /0');
  });

  it.each([
    'http://127.0.0.1:6379',
    'redis://127.0.0.1:6379/0?db=1',
    'redis://127.0.0.1:6379/0/1',
    'redis://127.0.0.1:6379/123456',
    'not a url',
  ])('check and run agree on refusing %s', (url) => {
    const check = checkSays(url);
    expect(check).toBeDefined();
    expect(runSays(url)).toBe(check);
  });

  it.each(['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/0', 'rediss://user:p%40ss@redis.internal:6380/3', 'redis://[::1]:6379/1'])(
    'check and run agree on accepting %s',
    (url) => {
      expect(checkSays(url)).toBeUndefined();
      expect(runSays(url)).toBeUndefined();
    },
  );

  it('takes the URL apart without ever putting the password in the safe form or a message', () => {
    expect(parseRedisUrl('rediss://tokend:p%40ss-secret@redis.internal:6380/3')).toEqual({
      host: 'redis.internal',
      port: 6380,
      db: 3,
      username: 'tokend',
      password: 'p@ss-secret',
      tls: true,
      safe: 'rediss://tokend@redis.internal:6380/3',
    });
    expect(parseRedisUrl('redis://[::1]/')).toMatchObject({ host: '::1', port: 6379, db: 0 });
    expect(() => parseRedisUrl('redis://:hunter2-secret@127.0.0.1:6379/x')).toThrow(expect.objectContaining({ message: expect.not.stringContaining('hunter2') }));
  });
});
