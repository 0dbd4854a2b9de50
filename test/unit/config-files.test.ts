import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CONFIG_BYTES, MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_TOKENS, loadConfigFile, parseConfig } from '../../src/config/load.js';
import { MAX_SECRET_BYTES, checkSecretFiles, readSecret, secretFiles } from '../../src/config/secrets.js';
import type { Config } from '../../src/config/types.js';
import { ConfigError } from '../../src/errors.js';
import { problemsOf } from '../support/config-problems.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tokend-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

async function rejection(p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfigFile', () => {
  const YAML = 'tokens:\n  orders:\n    issuer: ${ISSUER}\n    clientId: c\n    clientSecretFile: /s\n    grant: client_credentials\n';

  it('reads a YAML file with interpolation and overrides', async () => {
    const path = await file('tokend.yaml', YAML);
    const config = await loadConfigFile(path, { env: { ISSUER: 'https://idp.example.com' }, overrides: { logLevel: 'debug' } });
    expect(config.tokens[0]?.issuer).toBe('https://idp.example.com');
    expect(config.logLevel).toBe('debug');
  });

  it('reads a JSON file', async () => {
    const path = await file('tokend.json', JSON.stringify({ tokens: { orders: { issuer: 'https://idp.example.com', clientId: 'c', clientSecretFile: '/s', grant: 'client_credentials' } } }));
    expect((await loadConfigFile(path, { env: {} })).tokens[0]?.name).toBe('orders');
  });

  it('names the path of a file that does not exist', async () => {
    const missing = join(dir, 'nope.yaml');
    const err = await rejection(loadConfigFile(missing, { env: {} }));
    expect(err.problems).toEqual([`${missing}: config file does not exist`]);
  });

  it('names the path of a directory given as config file', async () => {
    const err = await rejection(loadConfigFile(dir, { env: {} }));
    expect(err.problems).toEqual([`${dir}: config file cannot be read (EISDIR)`]);
  });

  it('prefixes syntax errors with the file name', async () => {
    const path = await file('broken.yaml', 'tokens:\n  orders: [\n');
    const err = await rejection(loadConfigFile(path, { env: {} }));
    expect(err.problems[0]).toMatch(new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line \\d+, column \\d+: `));
  });

  it('reports field problems by path, without the file name', async () => {
    const path = await file('bad.yaml', YAML.replace('client_credentials', 'magic'));
    const err = await rejection(loadConfigFile(path, { env: { ISSUER: 'https://idp.example.com' } }));
    expect(err.problems).toEqual(['tokens.orders.grant: expected one of client_credentials, refresh_token, token_exchange, jwt_bearer']);
  });
});

describe('loadConfigFile: untrusted size and shape', () => {
  const VALID = 'tokens:\n  orders:\n    tokenEndpoint: https://idp.example.com/token\n    clientId: c\n    clientSecretFile: /s\n    grant: client_credentials\n';

  it('refuses /dev/zero after 8 MiB, naming the file and the limit', async () => {
    const err = await rejection(loadConfigFile('/dev/zero', { env: {} }));
    expect(err.problems).toEqual(['config /dev/zero: larger than 8 MiB']);
  });

  it('refuses a 16 MiB file, naming it', async () => {
    const path = await file('huge.yaml', VALID + `# ${'x'.repeat(2 * MAX_CONFIG_BYTES)}\n`);
    const err = await rejection(loadConfigFile(path, { env: {} }));
    expect(err.problems).toEqual([`config ${path}: larger than 8 MiB`]);
  });

  it('accepts a file of exactly 8 MiB', async () => {
    const padding = `# ${'x'.repeat(MAX_CONFIG_BYTES - VALID.length - 3)}\n`;
    const path = await file('exact.yaml', VALID + padding);
    expect((VALID + padding).length).toBe(MAX_CONFIG_BYTES);
    expect((await loadConfigFile(path, { env: {} })).tokens[0]?.name).toBe('orders');
  });

  it('stops reading a pipe at the limit instead of draining it', async () => {
    const fifo = join(dir, 'config.fifo');
    execFileSync('mkfifo', [fifo]);
    // A writer that would send 100 MiB; it can only get ahead of the reader by the pipe's buffer.
    let accepted = 0;
    const chunk = Buffer.alloc(64 * 1024, '#');
    const out = createWriteStream(fifo);
    const writerDone = new Promise<void>((resolve) => {
      out.on('error', () => resolve());
      out.on('close', () => resolve());
      const pump = (): void => {
        while (accepted < 100 * MAX_CONFIG_BYTES) {
          const more = out.write(chunk, (err) => {
            if (!err) accepted += chunk.length;
          });
          if (!more) return void out.once('drain', pump);
        }
        out.end();
      };
      out.once('open', pump);
    });
    const err = await rejection(loadConfigFile(fifo, { env: {} }));
    expect(err.problems).toEqual([`config ${fifo}: larger than 8 MiB`]);
    await writerDone;
    out.destroy();
    expect(accepted).toBeLessThan(2 * MAX_CONFIG_BYTES);
  });

  // What bench/scale.mjs starts: 1.6 MB of YAML, which the 1 MiB limit used to refuse.
  it('loads 10,000 tokens, each with its own secret file', async () => {
    let text = 'tokens:\n';
    for (let i = 0; i < 10_000; i++) {
      const name = `t${String(i).padStart(5, '0')}`;
      text += `  ${name}:\n    issuer: http://127.0.0.1:40000\n    clientId: ${name}\n    grant: client_credentials\n    clientSecretFile: /var/run/secrets/tokend-scale-abcdef/secrets/${name}\n`;
    }
    expect(text.length).toBeGreaterThan(1024 * 1024);
    const cfg = await loadConfigFile(await file('scale.yaml', text), { env: {} });
    expect(cfg.tokens).toHaveLength(10_000);
    expect(cfg.tokens[9_999]?.name).toBe('t09999');
  });

  // The yaml library's own duplicate-key check compared every key with every earlier one, and the
  // problem filter did the same: these took seconds to minutes. The test timeout is the only bound.
  it('validates 40,000 token keys, reporting each token', async () => {
    let text = 'tokens:\n';
    for (let i = 0; i < 40_000; i++) text += `  t${i}: {}\n`;
    const path = await file('many-tokens.yaml', text);
    const err = await rejection(loadConfigFile(path, { env: {} }));
    expect(err.problems).toHaveLength(4 * 40_000);
    expect(err.problems).toContain('tokens.t39999.clientId: required');
  });

  it('validates 120,000 keys in one nested mapping', async () => {
    // Keys without values ({a,b,...}: each null) are the most keys 1 MiB and the token limit allow.
    const keys = Array.from({ length: 120_000 }, (_, i) => `k${i.toString(36)}`).join(',');
    const path = await file('many-keys.yaml', `${VALID}    extra: {${keys}}\n`);
    const err = await rejection(loadConfigFile(path, { env: {} }));
    expect(err.problems).toEqual(['tokens.orders.extra: unknown key']);
  });

  it(`refuses more than ${MAX_YAML_TOKENS} YAML tokens before building the syntax tree (1 MiB of "{}, " took 900 MB)`, async () => {
    const path = await file('flow-bomb.yaml', `l: [${Array(262_000).fill('{}').join(', ')}]\n`);
    const err = await rejection(loadConfigFile(path, { env: {} }));
    expect(err.problems).toEqual([`${path}: more than ${MAX_YAML_TOKENS} YAML tokens (keys, values, punctuation)`]);
  });

  it('still finds a duplicate key among 40,000, and keys that collide as text', async () => {
    const keys = Array.from({ length: 40_000 }, (_, i) => `k${i}: 0`).join(', ');
    const err = await rejection(loadConfigFile(await file('dup.yaml', `${VALID}    extra: {${keys}, k17: 1}\n`), { env: {} }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/: line 7, column \d+: Map keys must be unique$/);
    expect(() => parseConfig('tokens:\n  1: {}\n  "1": {}\n', { env: {} })).toThrow('line 3, column 3: Map keys must be unique');
  });
});

describe('parseConfig: YAML aliases and nesting', () => {
  it('refuses a billion-laughs bomb built from merge keys', () => {
    const bomb = ['a: &a {x0: 1, x1: 1, x2: 1, x3: 1, x4: 1, x5: 1, x6: 1, x7: 1, x8: 1, x9: 1}'];
    for (let i = 0; i < 7; i++) {
      const [prev, next] = [String.fromCharCode(97 + i), String.fromCharCode(98 + i)];
      bomb.push(`${next}: &${next} {<<: [${Array(10).fill(`*${prev}`).join(', ')}], y${i}: 1}`);
    }
    expect(problemsOf(bomb.join('\n'))).toEqual(['config: too many or circular YAML aliases']);
  });

  it(`refuses more than ${MAX_YAML_ALIASES} aliases, even of different anchors (each costs a scan of every anchor before it)`, () => {
    const lines = ['l:'];
    for (let i = 0; i <= MAX_YAML_ALIASES; i++) lines.push(`  - &a${i} x`, `  - *a${i}`);
    expect(problemsOf(lines.join('\n'))).toEqual([`line ${2 * MAX_YAML_ALIASES + 3}, column 5: more than ${MAX_YAML_ALIASES} YAML aliases`]);
  });

  it('accepts merge keys that share defaults between tokens', () => {
    const text = `defaults: &d {tokenEndpoint: https://idp.example.com/token, clientSecretFile: /s, grant: client_credentials}\ntokens:\n  a: {<<: *d, clientId: a}\n  b: {<<: *d, clientId: b}\n`;
    expect(problemsOf(text)).toEqual(['defaults: unknown key']);
  });

  it(`refuses nesting deeper than ${MAX_YAML_DEPTH} levels with a message, not a stack overflow`, () => {
    const deep = (n: number): string => `tokens: ${'['.repeat(n)}${']'.repeat(n)}\n`;
    expect(problemsOf(deep(MAX_YAML_DEPTH - 1))).toEqual(['tokens: expected a mapping']);
    expect(problemsOf(deep(MAX_YAML_DEPTH))).toEqual([`line 1, column ${MAX_YAML_DEPTH + 8}: nested deeper than ${MAX_YAML_DEPTH} levels`]);
    expect(problemsOf(deep(150_000))).toEqual([`line 1, column ${MAX_YAML_DEPTH + 8}: nested deeper than ${MAX_YAML_DEPTH} levels`]);
  });
});

describe('readSecret', () => {
  it('returns a literal unchanged', async () => {
    expect(await readSecret({ kind: 'literal', value: ' keep spaces ' }, 'f')).toBe(' keep spaces ');
  });

  it('refuses an empty literal', async () => {
    const err = await rejection(readSecret({ kind: 'literal', value: '' }, 'tokens.a.clientSecret'));
    expect(err.problems).toEqual(['tokens.a.clientSecret: must not be empty']);
  });

  it('reads a file and drops the trailing newline and whitespace only', async () => {
    const path = await file('secret', '  s3cret value\r\n\n \t');
    expect(await readSecret({ kind: 'file', path }, 'tokens.a.clientSecretFile')).toBe('  s3cret value');
  });

  it('reads the file again on every call (Kubernetes rotates mounted secrets)', async () => {
    const path = await file('rotating', 'one\n');
    expect(await readSecret({ kind: 'file', path }, 'f')).toBe('one');
    await writeFile(path, 'two\n');
    expect(await readSecret({ kind: 'file', path }, 'f')).toBe('two');
  });

  it('follows symlinks, as Kubernetes secret volumes use them', async () => {
    const target = await file('target', 'linked\n');
    const link = join(dir, 'link');
    await symlink(target, link);
    expect(await readSecret({ kind: 'file', path: link }, 'f')).toBe('linked');
  });

  it('names the field and the path of a missing file', async () => {
    const path = join(dir, 'missing');
    const err = await rejection(readSecret({ kind: 'file', path }, 'tokens.orders.clientSecretFile'));
    expect(err.problems).toEqual([`tokens.orders.clientSecretFile: secret file ${path} does not exist`]);
  });

  it('refuses an empty or whitespace-only file', async () => {
    const path = await file('blank', '\n \n');
    const err = await rejection(readSecret({ kind: 'file', path }, 'store.passwordFile'));
    expect(err.problems).toEqual([`store.passwordFile: secret file ${path} is empty`]);
  });

  it('refuses a directory', async () => {
    const path = join(dir, 'adir');
    await mkdir(path);
    const err = await rejection(readSecret({ kind: 'file', path }, 'f'));
    expect(err.problems).toEqual([`f: secret file ${path} is a directory`]);
  });

  it('accepts exactly 64 KiB and refuses one byte more, without echoing the content', async () => {
    const exact = await file('exact', 'k'.repeat(MAX_SECRET_BYTES));
    expect((await readSecret({ kind: 'file', path: exact }, 'f')).length).toBe(MAX_SECRET_BYTES);
    const marker = 'DO-NOT-ECHO-';
    const big = await file('big', marker.repeat(Math.ceil((MAX_SECRET_BYTES + 1) / marker.length)));
    const err = await rejection(readSecret({ kind: 'file', path: big }, 'f'));
    expect(err.problems).toEqual([`f: secret file ${big} is larger than 64 KiB`]);
    expect(err.message).not.toContain(marker);
  });

  it('refuses a device that is not a regular file', async () => {
    const err = await rejection(readSecret({ kind: 'file', path: '/dev/null' }, 'f'));
    expect(err.problems).toEqual(['f: secret file /dev/null is not a regular file']);
  });
});

describe('checkSecretFiles', () => {
  async function configWithFiles(paths: Record<string, string>): Promise<Config> {
    const yaml = `
store:
  type: redis
  url: redis://127.0.0.1:6379
  passwordFile: ${paths['password']}
  encryptionKeyFile: ${paths['key']}
tokens:
  orders:
    issuer: https://idp.example.com
    clientId: c
    clientSecretFile: ${paths['client']}
    grant: refresh_token
    refreshTokenFile: ${paths['refresh']}
  signer:
    issuer: https://idp.example.com
    clientId: s
    clientAuth: private_key_jwt
    privateKeyFile: ${paths['pkey']}
    grant: client_credentials
  literal:
    issuer: https://idp.example.com
    clientId: l
    clientSecret: inline-secret
    grant: client_credentials
verify:
  issuers:
    - issuer: https://idp.example.com
      audience: api
      algorithms: [HS256]
      hmacSecretFile: ${paths['hmac']}
      introspection:
        clientId: api
        clientSecretFile: ${paths['introspection']}
`;
    return parseConfig(yaml, { env: {} });
  }

  it('lists every secret file with the field that names it', async () => {
    const names = ['password', 'key', 'client', 'refresh', 'pkey', 'hmac', 'introspection'];
    const config = await configWithFiles(Object.fromEntries(names.map((n) => [n, `/s/${n}`])));
    expect(secretFiles(config)).toEqual([
      { field: 'tokens.orders.clientSecretFile', path: '/s/client' },
      { field: 'tokens.orders.refreshTokenFile', path: '/s/refresh' },
      { field: 'tokens.signer.privateKeyFile', path: '/s/pkey' },
      { field: 'store.passwordFile', path: '/s/password' },
      { field: 'store.encryptionKeyFile', path: '/s/key' },
      { field: 'verify.issuers[0].hmacSecretFile', path: '/s/hmac' },
      { field: 'verify.issuers[0].introspection.clientSecretFile', path: '/s/introspection' },
    ]);
  });

  it('returns no problems when every file is readable', async () => {
    const paths: Record<string, string> = {};
    for (const n of ['password', 'client', 'refresh', 'pkey', 'hmac', 'introspection']) {
      paths[n] = await file(`ok-${n}`, `value-of-${n}\n`);
    }
    paths['key'] = await file('ok-key', `${'ab'.repeat(32)}\n`);
    expect(await checkSecretFiles(await configWithFiles(paths))).toEqual([]);
  });

  it('reports an encryption key of the wrong shape, as `run` would refuse it', async () => {
    const paths: Record<string, string> = {};
    for (const n of ['password', 'client', 'refresh', 'pkey', 'hmac', 'introspection']) {
      paths[n] = await file(`shape-${n}`, `value-of-${n}\n`);
    }
    paths['key'] = await file('shape-key', 'too-short-for-aes-256\n');
    expect(await checkSecretFiles(await configWithFiles(paths))).toEqual([
      `store.encryptionKeyFile: ${paths['key']} must hold 32 raw bytes, 64 hex digits or base64 of 32 bytes`,
    ]);
  });

  it('returns one problem line per unreadable or empty file, and never the content', async () => {
    const paths: Record<string, string> = {};
    for (const n of ['password', 'key', 'client', 'refresh', 'pkey', 'hmac', 'introspection']) {
      paths[n] = await file(`bad-${n}`, `value-of-${n}\n`);
    }
    paths['client'] = join(dir, 'absent-client');
    paths['hmac'] = await file('empty-hmac', '');
    paths['key'] = join(dir, 'absent-key');
    const problems = await checkSecretFiles(await configWithFiles(paths));
    expect(problems).toEqual([
      `tokens.orders.clientSecretFile: secret file ${paths['client']} does not exist`,
      `store.encryptionKeyFile: secret file ${paths['key']} does not exist`,
      `verify.issuers[0].hmacSecretFile: secret file ${paths['hmac']} is empty`,
    ]);
    expect(problems.join('\n')).not.toContain('value-of-');
  });

  it('has nothing to check for a memory store with literal secrets', async () => {
    const config = parseConfig(
      'tokens:\n  a:\n    issuer: https://idp.example.com\n    clientId: c\n    clientSecret: x\n    grant: client_credentials\n',
      { env: {} },
    );
    expect(await checkSecretFiles(config)).toEqual([]);
  });
});
