import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli, freePort, getToken, runCli, until } from '../support/daemon.js';
import { startRedis } from '../support/redis.js';
import { startWorld, type World } from '../support/world.js';
import { startReceiver } from '../unit/output-support.js';

/** A tokend config (memory store: outputs do not need the file store) with outputs and notify for `orders`. */
function configText(w: World, port: number, secret: string, outputsYaml: string, notifyYaml = '', store = 'store:\n  type: memory'): string {
  return [
    `listen: 127.0.0.1:${port}`,
    'reconcile: "*/1 * * * * *"',
    store,
    'tokens:',
    '  orders:',
    `    issuer: ${w.proxy.url}`,
    '    clientId: cc-client',
    `    clientSecretFile: ${secret}`,
    '    grant: client_credentials',
    '    scope: "api:read"',
    '    timeout: 1s',
    outputsYaml,
    notifyYaml,
  ].join('\n');
}

describe('outputs and notifications through the real daemon and a real IdP', () => {
  let w: World;
  beforeAll(async () => {
    expect(ensureBuiltCli()).toBe(true);
    w = await startWorld({ accessTokenTtlSec: 4 });
  });
  afterAll(async () => {
    await w?.close();
  });

  it('rewrites every output on each refresh and POSTs once per new token, after the files are written', async () => {
    const receiver = await startReceiver();
    const out = join(w.dir, 'out');
    mkdirSync(out, { recursive: true });
    // What the header file held when each POST arrived: the receiver reloads on the POST.
    const headerAtPost: string[] = [];
    const waitForPost = receiver.waitFor.bind(receiver);
    try {
      const secret = w.file('cc-secret-outputs', 'cc-secret-value-1f2e\n');
      const port = await freePort();
      const path = w.file(
        'outputs.yaml',
        configText(
          w,
          port,
          secret,
          [
            '    outputs:',
            `      - { path: ${out}/orders.header, format: header }`,
            `      - { path: ${out}/orders.env, format: env, variable: ORDERS_TOKEN, mode: "0640" }`,
            `      - { path: ${out}/orders.json, format: json }`,
            `      - { path: ${out}/orders.conf, format: template, template: "token={{access_token}} exp={{expires_at}}\\n" }`,
          ].join('\n'),
          ['    notify:', `      http: { url: "${receiver.url}" }`].join('\n'),
        ),
      );
      const p = w.start(path);
      for (let n = 1; n <= 3; n++) {
        await waitForPost(n);
        headerAtPost.push(readFileSync(join(out, 'orders.header'), 'utf8'));
      }
      await p.waitForEvent('token.refreshed', { token: 'orders', nth: 2, timeoutMs: 20_000 });

      // The endpoint and the header file agree (a refresh may land between two reads: retry).
      await until(async () => {
        const served = (await getToken(`http://127.0.0.1:${port}`, 'orders')).json();
        return readFileSync(join(out, 'orders.header'), 'utf8') === `Authorization: Bearer ${String(served.access_token)}\n`;
      }, 'the header file to hold the served token');

      expect((await p.stop()).code).toBe(0);

      const changes = [...p.events('token.acquired', 'orders'), ...p.events('token.refreshed', 'orders')];
      expect(changes.length).toBeGreaterThanOrEqual(3);
      // One POST per new token, in order, and nothing else.
      const posted = receiver.received.map((r) => JSON.parse(r.body) as Record<string, unknown>);
      expect(posted).toEqual(changes.map((c) => ({ token: 'orders', expires_at: c.expires_at, event: 'token.changed' })));
      // Every output rewritten for every new token, never for a reconcile tick.
      expect(p.events('output.written', 'orders')).toHaveLength(4 * changes.length);
      expect(p.events('output.failed')).toEqual([]);
      expect(p.events('notify.sent', 'orders')).toHaveLength(changes.length);
      // Each POST came after that token's header file was in place.
      expect(new Set(headerAtPost).size).toBe(3);

      const json = JSON.parse(readFileSync(join(out, 'orders.json'), 'utf8')) as Record<string, unknown>;
      const token = json.access_token as string;
      expect(json).toMatchObject({ token_type: 'Bearer', scope: 'api:read', expires_at: changes.at(-1)!.expires_at });
      expect(readFileSync(join(out, 'orders.header'), 'utf8')).toBe(`Authorization: Bearer ${token}\n`);
      expect(readFileSync(join(out, 'orders.env'), 'utf8')).toBe(`ORDERS_TOKEN=${token}\nORDERS_TOKEN_TYPE=Bearer\nORDERS_TOKEN_EXPIRES_AT=${String(json.expires_at)}\n`);
      expect(readFileSync(join(out, 'orders.conf'), 'utf8')).toBe(`token=${token} exp=${String(json.expires_at)}\n`);
      expect(statSync(join(out, 'orders.header')).mode & 0o777).toBe(0o600);
      expect(statSync(join(out, 'orders.env')).mode & 0o777).toBe(0o640);
      // The token is in the files, never in the log.
      expect(p.output).not.toContain(token);
    } finally {
      await receiver.close();
    }
  });

  it('with a Redis store, each replica writes its own header file and announces every token it takes on, adopted ones too', async () => {
    const redis = await startRedis();
    const receivers = [await startReceiver(), await startReceiver()];
    try {
      const secret = w.file('cc-secret-redis', 'cc-secret-value-1f2e\n');
      const store = `store:\n  type: redis\n  url: ${redis.url}\n  prefix: "outputs-test:"\n  lease: 1s`;
      const replicas = await Promise.all(
        receivers.map(async (r, i) => {
          const out = join(w.dir, `replica-${i}`);
          mkdirSync(out, { recursive: true });
          const outputs = ['    outputs:', `      - { path: ${out}/orders.header, format: header }`].join('\n');
          const notify = ['    notify:', `      http: { url: "${r.url}" }`].join('\n');
          const path = w.file(`redis-${i}.yaml`, configText(w, await freePort(), secret, outputs, notify, store));
          return { out, p: w.start(path), r };
        }),
      );
      for (const { p } of replicas) await p.waitForEvent('token.refreshed', { token: 'orders', nth: 2, timeoutMs: 20_000 });
      // Both pods end up with the same header file (a refresh may land between two reads: retry).
      await until(() => {
        const [a, b] = replicas.map(({ out }) => readFileSync(join(out, 'orders.header'), 'utf8'));
        return a === b;
      }, 'both replicas to hold the same token');
      for (const { p, r } of replicas) {
        expect((await p.stop()).code).toBe(0);
        // A replica starting after the other finds the token in Redis (token.loaded): its header file
        // is new, so it is written and announced as well.
        const held = p.lines.filter((l) => l.token === 'orders' && ['token.loaded', 'token.acquired', 'token.refreshed'].includes(l.event ?? ''));
        expect(r.received.map((x) => (JSON.parse(x.body) as { expires_at: number }).expires_at)).toEqual(held.map((e) => e.expires_at));
        expect(p.events('output.written', 'orders')).toHaveLength(held.length);
      }
      // At least one of them took tokens over from the other rather than asking the IdP.
      expect(replicas.some(({ p }) => p.events('token.refreshed', 'orders').some((e) => e.adopted === true))).toBe(true);
    } finally {
      await Promise.all(receivers.map((r) => r.close()));
      await redis.stop();
    }
  });

  it('exits 2 naming the output whose directory is missing, or whose template has an unknown placeholder', async () => {
    const secret = w.file('cc-secret-bad', 'cc-secret-value-1f2e\n');
    const missing = join(w.dir, 'no-such-dir');
    const bad = w.file(
      'bad-dir.yaml',
      configText(w, await freePort(), secret, ['    outputs:', `      - { path: ${missing}/orders.header, format: header }`].join('\n')),
    );
    const r = await runCli(['run', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`tokens.orders.outputs[0].path: directory ${missing} does not exist`);

    const tmpl = w.file(
      'bad-template.yaml',
      configText(w, await freePort(), secret, ['    outputs:', `      - { path: ${w.dir}/orders.conf, format: template, template: "{{token}}" }`].join('\n')),
    );
    const c = await runCli(['check', '--config', tmpl]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/tokens\.orders\.outputs\[0\]\.template: unknown placeholder \{\{token\}\}/);
  });
});
