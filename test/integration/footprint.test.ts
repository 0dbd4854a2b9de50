import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, getToken, scratch, TokendProcess } from '../support/daemon.js';
import { listenOnLoopback } from '../support/http-io.js';
import { startDevIdp, type DevIdp } from '../support/idp.js';
import { makePki } from './proxy-fixtures.js';

// What the built daemon loads, read from the process itself (test/support/module-report.mjs).
// Node's bundled undici costs ~13 MiB of RSS once loaded (docs/performance.md): the first touch of
// the global Headers or Response loads it, and on Node 22+ so does an ES `import` of node:http.
// tokend needs neither node's fetch nor its classes, so a daemon that obtains, refreshes and
// serves tokens must never load it.
const REPORT_PRELOAD = pathToFileURL(resolve(import.meta.dirname, '../support/module-report.mjs')).href;
const SECRET = 'footprint-secret-51c2';

describe('the built daemon loads only what it uses', () => {
  let idp: DevIdp;
  const s = scratch();
  beforeAll(async () => {
    idp = await startDevIdp({ clients: [{ clientId: 'cc-client', clientSecret: SECRET }], accessTokenTtlSec: 3 });
  });
  afterAll(async () => {
    await idp?.close();
    s.cleanup();
  });

  it('never loads node’s undici: discovery, a grant, a refresh and serving go through node:http and tokend’s Headers/Response', async () => {
    const report = join(s.dir, 'modules.json');
    const config = s.file('c.yaml', `tokens:\n  orders:\n    issuer: ${idp.issuer}\n    clientId: cc-client\n    clientSecret: ${SECRET}\n    grant: client_credentials\n`);
    const port = await freePort();
    const p = new TokendProcess(['run', '--config', config, '--listen', `127.0.0.1:${port}`], {
      NODE_OPTIONS: `--import ${REPORT_PRELOAD}`,
      TOKEND_TEST_MODULE_REPORT: report,
    });
    try {
      await p.waitForEvent('token.acquired', { token: 'orders' });
      // A 3 s token is refreshed within a few seconds: a second grant over the pooled connection.
      await p.waitForEvent('token.refreshed', { token: 'orders', timeoutMs: 15_000 });
      const res = await getToken(`http://127.0.0.1:${port}`, 'orders');
      expect(res.status).toBe(200);
      expect(typeof res.json().access_token).toBe('string');
      const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(await metrics.text()).toContain('tokend_token_ready{token="orders"} 1');
    } finally {
      expect((await p.stop()).code).toBe(0);
    }
    const loaded = JSON.parse(readFileSync(report, 'utf8')) as string[];
    // The report is real: node:http is there, and node:v8, which the /metrics scrape took.
    expect(loaded).toContain('NativeModule http');
    expect(loaded).toContain('NativeModule v8');
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
    // An http:// IdP needs no TLS (~7.6 MiB on Node 24): neither tokend's IdP client nor
    // prom-client's Pushgateway (behind its index) loads node:https. Nor do prom-client's default
    // metrics or tokend's monotonic clock load perf_hooks.
    for (const m of ['https', 'tls', 'perf_hooks']) expect(loaded).not.toContain(`NativeModule ${m}`);
  });
});

describe('start-up garbage', () => {
  const s = scratch();
  let idp: DevIdp;
  beforeAll(async () => {
    idp = await startDevIdp({ clients: [{ clientId: 'cc-client', clientSecret: SECRET }] });
  });
  afterAll(async () => {
    await idp?.close();
    s.cleanup();
  });

  // A preload that records each call of node's gc (with its options and the time), for the test to read.
  const gcSpy = (report: string): string =>
    `data:text/javascript,${encodeURIComponent(
      `import { writeFileSync } from 'node:fs'; const real = globalThis.gc; const calls = [];` +
        `if (real) globalThis.gc = (o) => { calls.push({ o, at: Date.now() }); return real(o); };` +
        `process.on('exit', () => writeFileSync(${JSON.stringify(report)}, JSON.stringify(calls)));`,
    )}`;

  it.each([
    ['with --expose-gc (the image), collected once, after the first grants', '--expose-gc', 1],
    ['without it, left to V8', '', 0],
  ])('%s', async (_name, flag, expected) => {
    const report = join(s.dir, `gc${expected}.json`);
    const config = s.file(`gc${expected}.yaml`, `tokens:\n  orders:\n    issuer: ${idp.issuer}\n    clientId: cc-client\n    clientSecret: ${SECRET}\n    grant: client_credentials\n`);
    const port = await freePort();
    const p = new TokendProcess(['run', '--config', config, '--listen', `127.0.0.1:${port}`], { NODE_OPTIONS: `${flag} --import ${gcSpy(report)}` });
    let acquiredAt: number;
    try {
      acquiredAt = Date.parse(String((await p.waitForEvent('token.acquired', { token: 'orders' })).time));
      expect((await getToken(`http://127.0.0.1:${port}`, 'orders')).status).toBe(200);
    } finally {
      expect((await p.stop()).code).toBe(0);
    }
    const calls = JSON.parse(readFileSync(report, 'utf8')) as Array<{ o: unknown; at: number }>;
    expect(calls.map((c) => c.o)).toEqual(expected === 0 ? [] : [{ type: 'major', execution: 'sync', flavor: 'last-resort' }]);
    for (const c of calls) expect(c.at).toBeGreaterThanOrEqual(acquiredAt);
  });
});

describe('node:https is loaded when first needed', () => {
  it('a fetch over http loads no TLS; the first https:// request loads it and is answered over it', async () => {
    const pki = makePki();
    const plain = await listenOnLoopback(createHttpServer((_req, res) => res.end('plain')));
    const tlsServer = createHttpsServer({ cert: pki.serverCert, key: pki.serverKey }, (_req, res) => res.end('over tls'));
    const secure = await listenOnLoopback(tlsServer as unknown as Server);
    const dist = (f: string): string => JSON.stringify(pathToFileURL(resolve(import.meta.dirname, '../../dist', f)).href);
    // As the CLI does: node's own Headers and Response would load undici, and undici node:tls.
    const script = `
      import { installFetchClasses } from ${dist('util/fetch-classes.js')};
      import { createPooledFetch } from ${dist('oauth/pooled-fetch.js')};
      installFetchClasses();
      const tlsLoaded = () => process.moduleLoadList.filter((m) => m === 'NativeModule tls' || m === 'NativeModule https');
      const { fetch, close } = createPooledFetch({ connections: 2 });
      const plain = await (await fetch(process.argv[1])).text();
      const before = tlsLoaded();
      const secure = await (await fetch(process.argv[2])).text();
      console.log(JSON.stringify({ plain, before, secure, after: tlsLoaded() }));
      close();`;
    try {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--input-type=module', '-e', script, plain.url, secure.url.replace('http:', 'https:')],
        { env: { ...process.env, NODE_EXTRA_CA_CERTS: pki.caFile }, timeout: 20_000 },
      );
      expect(JSON.parse(stdout)).toEqual({ plain: 'plain', before: [], secure: 'over tls', after: ['NativeModule tls', 'NativeModule https'] });
    } finally {
      await plain.close();
      await secure.close();
      pki.cleanup();
    }
  });
});
