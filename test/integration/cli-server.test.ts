import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freePort, getToken, runCli, scratch, TokendProcess, until, type LogLine } from '../support/daemon.js';
import { startDevIdp, type DevIdp } from '../support/idp.js';

const SECRET = 'server-cli-secret-7e1f';

describe('tokend run: listeners, start-up failures and logging', () => {
  let idp: DevIdp;
  const s = scratch();
  beforeAll(async () => {
    // Short-lived tokens keep the refresh timers busy while stdout is blocked.
    idp = await startDevIdp({ clients: [{ clientId: 'cc-client', clientSecret: SECRET }], accessTokenTtlSec: 4 });
  });
  afterAll(async () => {
    await idp?.close();
    s.cleanup();
  });

  const config = (extra = ''): string =>
    s.file(
      `c-${Math.random().toString(36).slice(2)}.yaml`,
      `${extra}tokens:\n  orders:\n    issuer: ${idp.issuer}\n    clientId: cc-client\n    clientSecret: ${SECRET}\n    grant: client_credentials\n`,
    );

  /** A port something else is listening on, and how to free it. */
  async function occupied(): Promise<{ port: number; close(): Promise<void> }> {
    const blocker = net.createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    return { port: (blocker.address() as net.AddressInfo).port, close: () => new Promise((r) => blocker.close(() => r())) };
  }

  /** The stdout lines that are JSON. */
  const jsonLines = (stdout: string): LogLine[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);

  it('--metrics-listen opens the probe listener: /healthz, /readyz and /metrics, never a token', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const p = new TokendProcess(['run', '--config', config(), '--listen', `127.0.0.1:${port}`, '--metrics-listen', `127.0.0.1:${metricsPort}`]);
    try {
      await p.waitForEvent('token.acquired', { token: 'orders' });
      const base = `http://127.0.0.1:${metricsPort}`;
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      const ready = await fetch(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true });
      expect(await (await fetch(`${base}/metrics`)).text()).toContain('tokend_token_ready{token="orders"} 1');
      const token = await getToken(base, 'orders');
      expect(token.status).toBe(404);
      expect((await getToken(`http://127.0.0.1:${port}`, 'orders')).status).toBe(200);
    } finally {
      await p.kill9();
    }
  });

  it('exits 1 naming listen when its address is in use, with a daemon.failed JSON line on stdout', async () => {
    const blocker = await occupied();
    try {
      const r = await runCli(['run', '--config', config(), '--listen', `127.0.0.1:${blocker.port}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `listen 127.0.0.1:${blocker.port}: address already in use (EADDRINUSE); is another tokend running? change listen or --listen`,
      );
      const failed = jsonLines(r.stdout).filter((l) => l.event === 'daemon.failed');
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ level: 'fatal', service: 'tokend', error: { code: 'EADDRINUSE' } });
      expect(String((failed[0]!.error as { message: string }).message)).toContain('change listen or --listen');
      expect(r.stdout + r.stderr).not.toContain(SECRET);
    } finally {
      await blocker.close();
    }
  });

  it('exits 1 naming metricsListen when the metrics address is in use', async () => {
    const blocker = await occupied();
    try {
      const port = await freePort();
      const r = await runCli(['run', '--config', config(), '--listen', `127.0.0.1:${port}`, '--metrics-listen', `127.0.0.1:${blocker.port}`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`metricsListen 127.0.0.1:${blocker.port}: address already in use (EADDRINUSE)`);
      expect(r.stderr).toContain('change metricsListen or --metrics-listen');
      expect(jsonLines(r.stdout).find((l) => l.event === 'daemon.failed')).toMatchObject({ level: 'fatal', error: { code: 'EADDRINUSE' } });
    } finally {
      await blocker.close();
    }
  });

  it('writes a bad configuration as a daemon.failed JSON line too (exit 2), naming the field', async () => {
    const r = await runCli(['run', '--config', config('allowedHosts: ["https://x.example"]\nmetricsPerToken: maybe\n')]);
    expect(r.code).toBe(2);
    const failed = jsonLines(r.stdout).find((l) => l.event === 'daemon.failed');
    expect(failed).toMatchObject({ level: 'fatal', error: { code: 'CONFIG_INVALID' } });
    const problems = (failed!.error as { problems: string[] }).problems;
    expect(problems.some((p) => p.startsWith('allowedHosts[0]:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('metricsPerToken:'))).toBe(true);
  });

  it('keeps serving and refreshing while nobody reads its stdout, dropping and counting log lines', async () => {
    const port = await freePort();
    const cfg = config(
      `logLevel: debug\nlisten: 127.0.0.1:${port}\nverify:\n  issuers:\n    - issuer: ${idp.issuer}\n      audience: [orders-api]\n`,
    );
    // stdout is a pipe this test does not read until the end; stderr is read (diagnostics).
    const child = spawn(process.execPath, [CLI, 'run', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const exited = once(child, 'exit');
    const base = `http://127.0.0.1:${port}`;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    try {
      const first = await until(async () => {
        const r = await getToken(base, 'orders').catch(() => undefined);
        return r?.status === 200 ? (r.json().access_token as string) : undefined;
      }, `the first token (stderr: ${stderr})`);

      // Every refused bearer token is one debug log line: flood stdout until tokend says it dropped lines.
      const dropped = await until(
        async () => {
          await Promise.all(Array.from({ length: 500 }, () => refuseOne(port, agent)));
          const metrics = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
          const n = Number(/^tokend_log_lines_dropped_total (\d+)$/m.exec(metrics)?.[1] ?? 0);
          return n > 0 ? n : undefined;
        },
        'log lines to be dropped',
        60_000,
        0,
      );
      expect(dropped).toBeGreaterThan(0);

      // The endpoint and the refresh timers keep going: a new token arrives while stdout is still blocked.
      expect((await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) })).status).toBe(200);
      const next = await until(async () => {
        const r = await getToken(base, 'orders');
        expect(r.status).toBe(200);
        const t = r.json().access_token as string;
        return t !== first ? t : undefined;
      }, 'a refreshed token while stdout is blocked', 20_000, 200);
      expect(next).not.toBe(first);

      // Reading resumes: one warning line says how many lines were lost.
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
      const warning = await until(
        () => out.split('\n').filter((l) => l.includes('"log.dropped"')).map((l) => JSON.parse(l) as LogLine)[0],
        'the log.dropped warning',
      );
      expect(warning).toMatchObject({ level: 'warn', event: 'log.dropped' });
      expect(warning.dropped as number).toBeGreaterThan(0);
      expect(out).not.toContain(SECRET);
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      agent.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});

/** POST /v1/verify with a bearer token that is not one: 401, and one debug log line in tokend. */
function refuseOne(port: number, agent: http.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/v1/verify', method: 'POST', agent, headers: { 'Tokend-Request': '1', Authorization: 'Bearer not-a-token!' } },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 401 ? resolve() : reject(new Error(`verify answered ${res.statusCode}`))));
      },
    );
    req.setTimeout(5_000, () => req.destroy(new Error('verify did not answer: is the event loop blocked?')));
    req.on('error', reject);
    req.end();
  });
}
