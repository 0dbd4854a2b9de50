import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LogLines, type LogLine } from './log-lines.js';

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

export type { LogLine } from './log-lines.js';

// A free loopback port below the ephemeral range: tests stop a tokend and start another on the
// same port, which an outgoing connection elsewhere could otherwise take in between.
export { freePort } from '../../dev/ports.js';

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
export class TokendProcess extends LogLines {
  readonly child: ChildProcess;
  /** Everything written to stdout and stderr, for secrecy checks. */
  output = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  /** `cli`: the script to run, dist/cli.js unless a test runs another build (the bundle). */
  constructor(args: string[], env: Record<string, string> = {}, cli = CLI) {
    const child = spawn(process.execPath, [cli, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
    super(20_000, exited.then(({ code, signal }) => `tokend exited (code ${code}, signal ${signal})`));
    this.child = child;
    this.exited = exited;
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
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
        this.push(line);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      this.output += chunk;
      this.stderr += chunk;
    });
  }

  protected override detail(): string {
    return `\nstderr: ${this.stderr.slice(-2000)}`;
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
  opts: { env?: Record<string, string>; input?: string; timeoutMs?: number; cli?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [opts.cli ?? CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
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
