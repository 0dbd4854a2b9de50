import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import net from 'node:net';

/** The built CLI, as users and the Docker image run it. Tests run `npm run build` first (pretest). */
export const CLI = resolve(import.meta.dirname, '../../dist/cli.js');

/**
 * Builds dist/ if it is missing: `npm test` builds first (pretest), a lone `vitest run` of one
 * file may not have. Type errors elsewhere still emit, so only the file's existence decides.
 */
export function ensureBuiltCli(): boolean {
  if (!existsSync(CLI)) {
    const root = resolve(import.meta.dirname, '../..');
    try {
      execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.json')], { stdio: 'ignore' });
    } catch {
      // Checked below.
    }
  }
  return existsSync(CLI);
}

/** A parsed log line. */
export type LogLine = Record<string, unknown> & { event?: string; token?: string; level?: string; msg?: string };

/** Asks the OS for a free loopback port (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** A scratch directory removed by `cleanup()`. */
export function scratch(prefix = 'tokend-test-'): { dir: string; file(name: string, content: string, mode?: number): string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return {
    dir,
    file(name, content, mode = 0o600) {
      const p = join(dir, name);
      writeFileSync(p, content, { mode });
      return p;
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `tokend` child process with its output captured line by line. */
export class TokendProcess {
  readonly child: ChildProcess;
  /** Every stdout line as JSON (non-JSON lines are kept as { raw }). */
  readonly lines: LogLine[] = [];
  /** Everything written to stdout and stderr, for secrecy checks. */
  output = '';
  stderr = '';
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let buf = '';
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => {
      this.output += chunk;
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const text = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!text.trim()) continue;
        let line: LogLine;
        try {
          line = JSON.parse(text) as LogLine;
        } catch {
          line = { raw: text };
        }
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => {
          if (w.pred(line)) {
            w.resolve(line);
            return false;
          }
          return true;
        });
      }
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => {
      this.output += chunk;
      this.stderr += chunk;
    });
    this.exited = new Promise((res) => this.child.once('exit', (code, signal) => res({ code, signal })));
  }

  /** Resolves with the first line (already seen or future) matching pred; rejects after timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 20_000, what = 'log line'): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      const done = (l: LogLine): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ pred, resolve: done });
      void this.exited.then(({ code, signal }) => {
        if (this.waiters.some((w) => w.resolve === done)) {
          clearTimeout(timer);
          reject(new Error(`tokend exited (code ${code}, signal ${signal}) while waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`));
        }
      });
    });
  }

  /** Waits until at least `nth` (default 1) lines carry this event (and token, if given); resolves with the nth. */
  async waitForEvent(event: string, opts: { token?: string; nth?: number; timeoutMs?: number } = {}): Promise<LogLine> {
    const nth = opts.nth ?? 1;
    const matching = (): LogLine[] => this.events(event, opts.token);
    await this.waitFor(() => matching().length >= nth, opts.timeoutMs, `${event}${opts.token ? ` for ${opts.token}` : ''} #${nth}`);
    return matching()[nth - 1]!;
  }

  events(event: string, token?: string): LogLine[] {
    return this.lines.filter((l) => l.event === event && (!token || l.token === token));
  }

  /** SIGTERM and wait for the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }

  async kill9(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/** Runs the CLI to completion and returns its exit code and output. */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdin.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** GET against a running sidecar with the required header. */
export async function getToken(
  base: string,
  name: string,
  opts: { accept?: string; minTtl?: number; header?: boolean } = {},
): Promise<{ status: number; body: string; headers: Headers; json(): Record<string, unknown> }> {
  const q = opts.minTtl !== undefined ? `?min_ttl=${opts.minTtl}` : '';
  const headers: Record<string, string> = { Accept: opts.accept ?? 'application/json' };
  if (opts.header !== false) headers['Tokend-Request'] = '1';
  const res = await fetch(`${base}/v1/token/${name}${q}`, { headers, signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  return { status: res.status, body, headers: res.headers, json: () => JSON.parse(body) as Record<string, unknown> };
}

export { until } from './until.js';
