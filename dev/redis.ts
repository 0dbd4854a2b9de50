/**
 * Private redis-server processes: for `DEMO_STORE=redis npm run demo` (startLocalRedis) and, through
 * the same primitives, for the tests (test/support/redis.ts). Loopback only, on a free port, no
 * persistence, in a directory of their own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from './ports.js';

/** A running private redis-server. */
export interface LocalRedis {
  /** `redis://127.0.0.1:PORT/0` */
  readonly url: string;
  readonly port: number;
  /** SIGTERM, then resolves once the process has exited. */
  stop(): Promise<void>;
}

/** How long redis-server may take to answer its first PING (ms). */
const READY_TIMEOUT_MS = 5_000;

/**
 * Runs start on a free port; when another process took that port between freePort() and the bind
 * (start rejects naming "in use"), again on another, five times at most.
 */
export async function onFreePort<T>(start: (port: number) => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (attempt >= 4 || !String(err).includes('in use')) throw err;
    }
  }
}

/** One raw PING over TCP; resolves true on +PONG (or NOAUTH: alive, but wants a password). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1');
    let buf = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'));
    });
  });
}

/** Resolves once proc has exited (at once if it already has). */
export function waitExit(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => proc.once('exit', () => resolve()));
}

/** redis-server's arguments for a private server on port: loopback, protected, no persistence, files in dir. */
export function redisServerArgs(port: number, dir: string, extra: readonly string[] = []): string[] {
  return [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--protected-mode', 'yes',
    '--save', '',
    '--appendonly', 'no',
    '--dir', dir,
    '--daemonize', 'no',
    '--loglevel', 'warning',
    ...extra,
  ];
}

/**
 * Starts `redis-server args` (which must be on the PATH) in dir and resolves once it answers PING
 * on port. Rejects with the server's output if it exits first (EADDRINUSE when another process
 * took the port in between).
 */
export async function spawnRedis(args: readonly string[], port: number, dir: string): Promise<ChildProcess> {
  const proc = spawn('redis-server', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const spawnError = new Promise<never>((_, reject) => proc.once('error', reject));
  spawnError.catch(() => undefined);
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited) throw new Error(`redis-server on port ${port} exited before it was ready: ${output.trim()}`);
    const ok = await Promise.race([ping(port), spawnError]);
    if (ok) return proc;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer PING within ${READY_TIMEOUT_MS} ms`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Starts redis-server (which must be on the PATH) with its working directory at `dir`. */
export async function startLocalRedis(dir: string): Promise<LocalRedis> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { proc, port } = await onFreePort(async (p) => ({ proc: await spawnRedis(redisServerArgs(p, dir), p, dir), port: p }));
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await waitExit(proc);
    },
  };
}
