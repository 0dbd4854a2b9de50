import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, getToken, scratch, TokendProcess } from '../support/daemon.js';
import { startDevIdp, type DevIdp } from '../support/idp.js';

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
    // The report is real: node:http and the TLS stack are there.
    expect(loaded).toContain('NativeModule http');
    expect(loaded.filter((m) => m.includes('undici'))).toEqual([]);
  });
});
