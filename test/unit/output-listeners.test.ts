import { mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import type { NotifyConfig, OutputConfig } from '../../src/config/schema-output.js';
import type { TokenConfig } from '../../src/config/types.js';
import { createTokenListeners, type TokenOutputs } from '../../src/output/listeners.js';
import type { AccessToken } from '../../src/token.js';
import { tokenConfig } from '../support/token-config.js';
import { until } from '../support/until.js';
import { logSink, startReceiver, tokenNo, type Receiver } from './output-support.js';

let dir: string;
let receiver: Receiver | undefined;
let outputs: TokenOutputs | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-listeners-'));
});
afterEach(async () => {
  await outputs?.close();
  outputs = undefined;
  await receiver?.close();
  receiver = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const tokenWith = (outputs: OutputConfig[], notify?: NotifyConfig): TokenConfig => tokenConfig({ outputs, notify });

const out = (name: string, format: OutputConfig['format'], extra: Partial<OutputConfig> = {}): OutputConfig => ({
  path: join(dir, name),
  format,
  mode: 0o600,
  ...(format === 'env' ? { variable: 'TOKEN' } : {}),
  ...extra,
});

async function setup(outs: OutputConfig[], notify?: NotifyConfig, closeBoundMs?: number) {
  const sink = logSink();
  const registry = new Registry();
  const o = await createTokenListeners(tokenWith(outs, notify), { clock: systemClock, logger: sink.logger, registry, closeBoundMs });
  outputs = o;
  const listener = o.listeners[0]!;
  const metric = async (name: string, labels: Record<string, string>): Promise<number> => {
    const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
    const v = (m?.values as Array<{ labels: Record<string, string>; value: number }> | undefined)?.find((x) =>
      Object.entries(labels).every(([k, val]) => x.labels[k] === val),
    );
    return v?.value ?? 0;
  };
  return { sink, listener, o, metric, change: (t: AccessToken, origin: 'grant' | 'adopted' | 'loaded' = 'grant') => listener.tokenChanged('orders', t, origin) };
}

describe('outputs through the token listener', () => {
  it('a reader in a tight loop never sees a partial or empty file while tokens change', async () => {
    const s = await setup([out('orders', 'raw'), out('orders.json', 'json')]);
    const LEN = 16_000;
    s.change(tokenNo(0, LEN));
    await until(() => s.sink.events('output.written').length >= 2, 'first writes');

    // The reader runs on another thread, so its reads interleave with the writes for real.
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { readFileSync } = require('node:fs');
       const { workerData, parentPort } = require('node:worker_threads');
       const stop = new Int32Array(workerData.stop);
       let reads = 0; const bad = [];
       while (Atomics.load(stop, 0) === 0) {
         const raw = readFileSync(workerData.raw, 'utf8');
         const json = readFileSync(workerData.json, 'utf8');
         reads++;
         if (!/^tok-\\d{6}-x+$/.test(raw) || raw.length !== workerData.len) bad.push('raw:' + raw.length);
         try { if (JSON.parse(json).access_token.length !== workerData.len) bad.push('json-token'); } catch { bad.push('json:' + json.length); }
       }
       parentPort.postMessage({ reads, bad: bad.slice(0, 5), badCount: bad.length });`,
      { eval: true, workerData: { stop: stop.buffer, raw: join(dir, 'orders'), json: join(dir, 'orders.json'), len: LEN } },
    );
    const result = new Promise<{ reads: number; bad: string[]; badCount: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    try {
      // Each change waits for its two writes: queued changes would be coalesced into fewer writes.
      for (let i = 1; i <= 100; i++) {
        s.change(tokenNo(i, LEN));
        await until(() => s.sink.events('output.written').length >= 2 * (i + 1), `writes of token ${i}`, 15_000, 1);
      }
    } finally {
      Atomics.store(stop, 0, 1);
    }
    const r = await result;
    await worker.terminate();
    expect(r.badCount, JSON.stringify(r.bad)).toBe(0);
    expect(r.reads).toBeGreaterThan(50);
    expect(s.sink.events('output.written')).toHaveLength(202);
  });

  it('called again and again with the same token, writes nothing more and notifies nothing more', async () => {
    receiver = await startReceiver();
    const s = await setup([out('orders', 'raw'), out('orders.header', 'header'), out('orders.env', 'env')], {
      http: { url: receiver.url, timeoutMs: 5_000 },
    });
    const t = tokenNo(1);
    s.change(t);
    await receiver.waitFor(1);
    const before = ['orders', 'orders.header', 'orders.env'].map((f) => statSync(join(dir, f)));
    for (let i = 0; i < 5; i++) {
      s.change(t);
      s.change({ ...t }, 'adopted');
      await new Promise((r) => setImmediate(r));
    }
    await s.o.close();
    const after = ['orders', 'orders.header', 'orders.env'].map((f) => statSync(join(dir, f)));
    expect(after.map((st) => [st.ino, st.mtimeMs])).toEqual(before.map((st) => [st.ino, st.mtimeMs]));
    expect(receiver.received).toHaveLength(1);
    expect(s.sink.events('output.written')).toHaveLength(3);
    expect(await s.metric('tokend_output_writes_total', { result: 'written' })).toBe(3);
    expect(await s.metric('tokend_notifications_total', { kind: 'http', result: 'sent' })).toBe(1);
  });

  it('notifies after the outputs are written, so a receiver reloading on the POST reads the new file', async () => {
    receiver = await startReceiver();
    const s = await setup([out('orders.header', 'header')], { http: { url: receiver.url, timeoutMs: 5_000 } });
    const seenAtPost: string[] = [];
    const waitFor = receiver.waitFor.bind(receiver);
    // Built once: tokenNo reads the time, and a second boundary between two calls would change expiresAt.
    const tokens = [1, 2, 3].map((i) => tokenNo(i));
    for (const [i, t] of tokens.entries()) {
      s.change(t);
      await waitFor(i + 1);
      seenAtPost.push(readFileSync(join(dir, 'orders.header'), 'utf8'));
    }
    expect(seenAtPost).toEqual(tokens.map((t) => `Authorization: Bearer ${t.accessToken}\n`));
    expect(receiver.received.map((r) => (JSON.parse(r.body) as { expires_at: number }).expires_at)).toEqual(
      tokens.map((t) => Math.floor(t.expiresAt / 1000)),
    );
  });

  it('a token loaded at start-up that the outputs already hold is neither rewritten nor announced', async () => {
    receiver = await startReceiver();
    const notify = { http: { url: receiver.url, timeoutMs: 5_000 } };
    const t = tokenNo(7);
    const first = await setup([out('orders', 'raw')], notify);
    first.change(t);
    await receiver.waitFor(1);
    await first.o.close();
    const ino = statSync(join(dir, 'orders')).ino;

    // A restart: the token comes back from the store.
    const second = await setup([out('orders', 'raw')], notify);
    second.change(t, 'loaded');
    await second.o.close();
    expect(statSync(join(dir, 'orders')).ino).toBe(ino);
    expect(second.sink.events('output.unchanged')).toHaveLength(1);
    expect(receiver.received).toHaveLength(1);

    // A restart where the stored token differs from the file (written by an older run): both happen.
    const third = await setup([out('orders', 'raw')], notify);
    third.change(tokenNo(8), 'loaded');
    await receiver.waitFor(2);
    expect(readFileSync(join(dir, 'orders'), 'utf8')).toBe(tokenNo(8).accessToken);
  });

  it('retries a failed write while the token is usable, and notifies once it is written', async () => {
    receiver = await startReceiver();
    const s = await setup([out('orders', 'raw')], { http: { url: receiver.url, timeoutMs: 5_000 } });
    // A directory where the file should be: the rename fails (EISDIR) until it is gone.
    mkdirSync(join(dir, 'orders'));
    s.change(tokenNo(1));
    const failed = await until(() => s.sink.events('output.failed')[0], 'a failed write');
    expect(failed.reason).toMatch(/^write failed \(E[A-Z]+\)$/);
    expect(receiver.received).toHaveLength(0);
    rmdirSync(join(dir, 'orders'));
    await receiver.waitFor(1);
    expect(readFileSync(join(dir, 'orders'), 'utf8')).toBe(tokenNo(1).accessToken);
    expect(await s.metric('tokend_output_writes_total', { result: 'failed' })).toBeGreaterThanOrEqual(1);
  });

  it('a token the format cannot hold is refused for that output only; the others are written', async () => {
    const s = await setup([out('orders.env', 'env'), out('orders', 'raw')]);
    const odd = { ...tokenNo(1), accessToken: 'has spaces; and $(quotes)' };
    s.change(odd);
    await s.o.close();
    expect(readFileSync(join(dir, 'orders'), 'utf8')).toBe(odd.accessToken);
    expect(() => statSync(join(dir, 'orders.env'))).toThrow();
    const refused = s.sink.events('output.failed');
    expect(refused).toEqual([expect.objectContaining({ level: 'error', path: join(dir, 'orders.env'), format: 'env' })]);
    expect(s.sink.raw.join('\n')).not.toContain(odd.accessToken);
  });

  it('returns at once and closes within its bound while the receiver never answers', async () => {
    // A receiver that holds every request open.
    const hung = await import('node:http').then(({ createServer }) => createServer(() => undefined));
    await new Promise<void>((r) => hung.listen(0, '127.0.0.1', () => r()));
    const port = (hung.address() as { port: number }).port;
    try {
      const s = await setup([out('orders', 'raw')], { http: { url: `http://127.0.0.1:${port}/hook`, timeoutMs: 60_000 } }, 100);
      s.change(tokenNo(1));
      s.change(tokenNo(2));
      await until(() => s.sink.events('output.written').length >= 1, 'a write');
      await s.o.close();
      expect(await s.metric('tokend_notifications_total', { kind: 'http', result: 'failed' })).toBe(1);
      expect(s.sink.events('notify.failed')[0]).toMatchObject({ reason: 'stopped before an answer came', final: true });
    } finally {
      hung.closeAllConnections();
      await new Promise((r) => hung.close(r));
    }
  });

  it('a token with neither outputs nor notify gets no listener', async () => {
    const o = await createTokenListeners(tokenWith([]), { clock: systemClock, logger: logSink().logger, registry: new Registry() });
    expect(o.listeners).toEqual([]);
    await o.close();
  });
});
