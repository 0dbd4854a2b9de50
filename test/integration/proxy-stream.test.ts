/**
 * The egress proxy as users run it: the built CLI with a `proxies` section, a real token from the
 * dev IdP, a real upstream. 200 MiB go up and 200 MiB come down through it with the proxy's
 * resident memory bounded (read from /proc), and a reader that stops reading stops the upstream.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuiltCli, freePort, runCli, scratch, TokendProcess } from '../support/daemon.js';
import { until } from '../support/until.js';
import { CLIENT, ordersTokenLines, startIdp, startUpstream, type Idp, type Upstream } from './proxy-fixtures.js';

const MiB = 1024 * 1024;
const TOTAL = 200 * MiB;
/**
 * Growth of the proxy's peak resident memory allowed while 2 x 200 MiB pass through it. Measured:
 * about 40 MiB on Node 20 and 80 MiB on Node 24, which is V8 letting dead socket buffers pile up
 * to its external-memory GC trigger rather than anything the proxy holds: it does not grow with the
 * body. A proxy that kept a whole body would exceed 200 MiB.
 */
const RSS_BOUND = 120 * MiB;
/** Most bytes a writer may get ahead of a reader that stopped, across the proxy (socket buffers on two hops). */
const AHEAD_BOUND = 40 * MiB;
const HAS_PROC = existsSync('/proc/self/status');

/** A 64 KiB block of bytes that are not all alike (so nothing along the way can shortcut them). */
const BLOCK = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 131 + 7) % 251));

/** Resident memory of a process, now and at its peak (VmRSS, VmHWM), in bytes. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

/** One request through the proxy; `body` writes the request body before it is ended. */
function call(proxyUrl: string, opts: http.RequestOptions, body?: (req: http.ClientRequest) => Promise<unknown>): Promise<http.IncomingMessage> {
  const u = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, agent: false, ...opts }, resolve);
    req.on('error', reject);
    if (body) body(req).then(() => req.end(), reject);
    else req.end();
  });
}

/**
 * Resolves with how far a writer got once it stalls: waiting for 'drain' and no further byte
 * written across five polls (the proxy passed backpressure on instead of buffering).
 */
async function stalled(progress: () => { written: number; waiting: boolean }): Promise<number> {
  let last = -1;
  let still = 0;
  await until(() => {
    const p = progress();
    still = p.waiting && p.written === last ? still + 1 : 0;
    last = p.written;
    return still >= 5;
  }, 'the writer to stall', 20_000, 100);
  return last;
}

/**
 * Writes `total` bytes of BLOCK to w, waiting for 'drain' when it is full; resolves with their
 * sha256. `progress` (if given) is kept up to date with bytes written and whether it waits.
 */
async function writeAll(w: NodeJS.WritableStream & { write(b: Buffer): boolean }, total: number, progress = { written: 0, waiting: false }): Promise<string> {
  const hash = createHash('sha256');
  for (let sent = 0; sent < total; sent += BLOCK.length) {
    const chunk = total - sent >= BLOCK.length ? BLOCK : BLOCK.subarray(0, total - sent);
    hash.update(chunk);
    const more = w.write(chunk);
    progress.written += chunk.length;
    if (!more) {
      progress.waiting = true;
      await new Promise((r) => w.once('drain', r));
      progress.waiting = false;
    }
  }
  return hash.digest('hex');
}

async function sha256Of(stream: AsyncIterable<Buffer>): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const c of stream) {
    bytes += c.length;
    hash.update(c);
  }
  return { bytes, sha256: hash.digest('hex') };
}

describe('egress proxy: the built CLI streams 200 MiB each way with bounded memory', () => {
  let idp: Idp;
  let upstream: Upstream;
  let tokend: TokendProcess;
  let proxyUrl: string;
  const s = scratch('tokend-proxy-stream-');
  beforeAll(async () => {
    expect(ensureBuiltCli(), 'dist/cli.js (npm run build)').toBe(true);
    [idp, upstream] = await Promise.all([startIdp(300), startUpstream()]);
    const [port, proxyPort] = [await freePort(), await freePort()];
    proxyUrl = `http://127.0.0.1:${proxyPort}`;
    const secret = s.file('secret', `${CLIENT.clientSecret}\n`);
    const config = s.file(
      'tokend.yaml',
      [
        `listen: 127.0.0.1:${port}`,
        'store:',
        '  type: memory',
        'tokens:',
        ...ordersTokenLines(idp, secret),
        'proxies:',
        `  - listen: 127.0.0.1:${proxyPort}`,
        `    upstream: ${upstream.url}`,
        '    token: orders',
        '',
      ].join('\n'),
    );
    tokend = new TokendProcess(['run', '--config', config]);
    await tokend.waitForEvent('token.acquired', { token: 'orders' });
    await tokend.waitFor((l) => l.event === 'server.listening' && l.proxy === 'orders', 10_000, 'the proxy to listen');
  });
  afterAll(async () => {
    await tokend?.stop();
    await Promise.all([idp?.close(), upstream?.close()]);
    s.cleanup();
  });

  it('uploads and downloads 200 MiB intact, and its peak resident memory grows by less than 120 MiB', async () => {
    const pid = tokend.child.pid!;
    // Warm up (first request, first pooled connection), then take the baseline.
    upstream.raw((req, res) => {
      req.resume();
      req.on('end', () => res.end('warm'));
    });
    (await call(proxyUrl, { path: '/warm' })).resume();
    const before = HAS_PROC ? memoryOf(pid) : undefined;

    let received = { bytes: 0, sha256: '', auth: '' };
    upstream.raw((req, res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        bytes += c.length;
        hash.update(c);
      });
      req.on('end', () => {
        received = { bytes, sha256: hash.digest('hex'), auth: req.headers.authorization ?? '' };
        res.end('stored');
      });
    });
    let sentHash = '';
    const up = await call(proxyUrl, { method: 'PUT', path: '/upload', headers: { 'Content-Length': String(TOTAL) } }, async (req) => {
      sentHash = await writeAll(req, TOTAL);
    });
    up.resume();
    expect(up.statusCode).toBe(200);
    expect(received.bytes).toBe(TOTAL);
    expect(received.sha256).toBe(sentHash);
    expect(received.auth).toMatch(/^Bearer \S+$/);

    let servedHash: Promise<string> = Promise.resolve('');
    upstream.raw((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      servedHash = writeAll(res, TOTAL).then((h) => {
        res.end();
        return h;
      });
    });
    const down = await call(proxyUrl, { path: '/download' });
    const got = await sha256Of(down);
    expect(got.bytes).toBe(TOTAL);
    expect(got.sha256).toBe(await servedHash);

    if (before !== undefined) {
      const after = memoryOf(pid);
      console.log(`proxy RSS before ${(before.rss / MiB).toFixed(1)} MiB, peak after ${(after.peak / MiB).toFixed(1)} MiB`);
      expect(after.peak - before.rss).toBeLessThan(RSS_BOUND);
    }
  }, 120_000);

  it('passes backpressure on: a reader that stops reading stops the writer on the other side, and nothing is lost', async () => {
    // Download: the application stops reading; the upstream must stall, not the proxy's memory grow.
    const served = { written: 0, waiting: false };
    let servedHash: Promise<string> = Promise.resolve('');
    upstream.raw((_req, res) => {
      servedHash = writeAll(res, TOTAL, served).then((h) => {
        res.end();
        return h;
      });
    });
    const down = await call(proxyUrl, { path: '/download' });
    down.pause();
    const ahead = await stalled(() => served);
    console.log(`download: the upstream stalled ${(ahead / MiB).toFixed(1)} MiB ahead of the paused reader`);
    expect(ahead).toBeLessThan(AHEAD_BOUND);
    const got = await sha256Of(down);
    expect(got).toEqual({ bytes: TOTAL, sha256: await servedHash });

    // Upload: the upstream stops reading; the application's writes must stall.
    let paused: { req: http.IncomingMessage; res: http.ServerResponse } | undefined;
    upstream.raw((req, res) => {
      req.pause();
      paused = { req, res };
    });
    const sent = { written: 0, waiting: false };
    let sentHash: Promise<string> = Promise.resolve('');
    const answer = call(proxyUrl, { method: 'POST', path: '/upload', headers: { 'Transfer-Encoding': 'chunked' } }, (req) => {
      sentHash = writeAll(req, TOTAL, sent);
      return sentHash;
    });
    // The upstream's handler runs once the first bytes arrive; by then its reader is paused.
    const { req, res } = await until(() => paused, 'the upload to reach the upstream');
    const behind = await stalled(() => sent);
    console.log(`upload: the application stalled ${(behind / MiB).toFixed(1)} MiB ahead of the paused upstream`);
    expect(behind).toBeLessThan(AHEAD_BOUND);
    const received = await sha256Of(req);
    res.end();
    (await answer).resume();
    expect(received).toEqual({ bytes: TOTAL, sha256: await sentHash });
  }, 120_000);

  it('refuses to start (exit 2) when a proxy cannot be set up, naming the file', async () => {
    const config = s.file(
      'bad-proxy.yaml',
      [
        `listen: 127.0.0.1:${await freePort()}`,
        'tokens:',
        ...ordersTokenLines(idp, `${s.dir}/secret`),
        'proxies:',
        `  - listen: 127.0.0.1:${await freePort()}`,
        '    upstream: https://orders.internal',
        '    token: orders',
        `    caFile: ${s.dir}/no-such-ca.pem`,
        '',
      ].join('\n'),
    );
    const r = await runCli(['run', '--config', config]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${s.dir}/no-such-ca.pem`);
  });
});
