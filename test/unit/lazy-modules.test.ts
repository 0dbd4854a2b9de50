/**
 * What a process loads is part of its footprint (docs/performance.md): each case runs the built
 * modules (dist/) in a fresh node process and reports which packages it loaded. CommonJS
 * packages (ioredis, undici) show in require.cache even when imported from ES modules.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli } from '../support/daemon.js';

const run = promisify(execFile);
const DIST = resolve(import.meta.dirname, '../../dist');
const dist = (file: string): string => pathToFileURL(join(DIST, file)).href;

let dir: string;
beforeAll(() => {
  expect(ensureBuiltCli()).toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'tokend-lazy-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` (an ES module body that sets `result`) in a fresh node; resolves with result and the packages loaded. */
async function inChild(name: string, body: string): Promise<{ result: unknown; packages: string[]; builtins: string[] }> {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(
    file,
    `import { createRequire } from 'node:module';
let result;
${body}
const packages = [...new Set(Object.keys(createRequire(import.meta.url).cache)
  .map((p) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(p)?.[1]).filter(Boolean))];
process.stdout.write(JSON.stringify({ result, packages, builtins: process.moduleLoadList }));
process.exit(0);
`,
  );
  const { stdout } = await run(process.execPath, [file], { timeout: 20_000 });
  return JSON.parse(stdout) as { result: unknown; packages: string[]; builtins: string[] };
}

const storeCase = (type: string, cfg: string) => `
const { createStore } = await import(${JSON.stringify(dist('store/create.js'))});
const { createLogger } = await import(${JSON.stringify(dist('log.js'))});
const store = await createStore(${cfg}, createLogger('silent', { write() {} }));
result = store.constructor.name;
await store.close?.().catch(() => undefined);
`;

describe('createStore loads only the configured store', () => {
  it('a memory store loads no ioredis', async () => {
    const { result, packages } = await inChild('memory', storeCase('memory', `{ type: 'memory' }`));
    expect(result).toBe('MemoryStore');
    expect(packages).not.toContain('ioredis');
  });

  it('a file store loads no ioredis', async () => {
    const cfg = `{ type: 'file', dir: ${JSON.stringify(join(dir, 'tokens'))}, mode: 0o600 }`;
    const { result, packages } = await inChild('file', storeCase('file', cfg));
    expect(result).toBe('FileStore');
    expect(packages).not.toContain('ioredis');
  });

  it('a redis store does load ioredis (so the checks above can fail)', async () => {
    const cfg = `{ type: 'redis', url: 'redis://127.0.0.1:1/0', prefix: 't:', leaseMs: 10000 }`;
    const { result, packages } = await inChild('redis', storeCase('redis', cfg));
    expect(result).toBe('RedisStore');
    expect(packages).toContain('ioredis');
  });
});

describe('talking to an IdP and to the sidecar', () => {
  it("the IdP registry's fetch loads no undici package", async () => {
    const { result, packages } = await inChild(
      'registry',
      `
import http from 'node:http';
const server = http.createServer((q, s) => s.end('{"ok":true}'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const { createIdpRegistry } = await import(${JSON.stringify(dist('oauth/idp-registry.js'))});
const registry = createIdpRegistry();
const res = await registry.fetch('http://127.0.0.1:' + server.address().port + '/');
result = await res.json();
await registry.close();
server.close();
`,
    );
    expect(result).toEqual({ ok: true });
    expect(packages).not.toContain('undici');
  });

  it("`tokend get`'s client does not load node's bundled undici (node:http's ES facade does on Node 22+)", async () => {
    const { result, builtins } = await inChild(
      'client',
      `
const http = process.getBuiltinModule('node:http');
const server = http.createServer((q, s) => s.end('tok'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const { sidecarGet } = await import(${JSON.stringify(dist('client.js'))});
result = (await sidecarGet('http://127.0.0.1:' + server.address().port, '/v1/token/x', { accept: 'text/plain' })).body;
server.close();
`,
    );
    expect(result).toBe('tok');
    expect(builtins).not.toContain('NativeModule internal/deps/undici/undici');
  });
});
