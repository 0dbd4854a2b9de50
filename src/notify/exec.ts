/**
 * Exec notifications: a command run without a shell (arguments are passed as they are: `;`, `$`,
 * quotes mean nothing), with a minimal environment that never holds the token, killed (with its
 * whole process group) when it overruns its timeout. Its output is captured up to a bound.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';
import type { Clock } from '../clock.js';
import type { ExecNotifyConfig } from '../config/schema-output.js';
import { errnoCode } from '../errors.js';
import { CHANGE_EVENT, type ChangeEvent, type Notifier, type NotifyOutcome } from './notifier.js';

/** Most output kept per stream (bytes); the rest is counted, not kept. */
export const MAX_EXEC_OUTPUT_BYTES = 4096;
/** How long to wait for the output pipes to close after the command exited (ms). */
const PIPE_GRACE_MS = 1_000;
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Collects up to MAX_EXEC_OUTPUT_BYTES of a stream. */
function capture(stream: Readable | null): () => string {
  const chunks: Buffer[] = [];
  let kept = 0;
  let dropped = 0;
  stream?.on('data', (chunk: Buffer) => {
    const take = Math.min(MAX_EXEC_OUTPUT_BYTES - kept, chunk.length);
    if (take > 0) {
      chunks.push(chunk.subarray(0, take));
      kept += take;
    }
    dropped += chunk.length - take;
  });
  return () => Buffer.concat(chunks).toString('utf8') + (dropped > 0 ? `… (${dropped} more bytes)` : '');
}

/** The environment a command gets: PATH and what changed, nothing else (no token, no tokend secrets). */
export function execEnvironment(event: ChangeEvent): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? DEFAULT_PATH,
    TOKEND_TOKEN: event.name,
    TOKEND_EXPIRES_AT: String(event.expiresAt),
    TOKEND_EVENT: CHANGE_EVENT,
  };
}

/** A notifier running cfg.command once per change; timers on clock. */
export function execNotifier(cfg: ExecNotifyConfig, clock: Clock): Notifier {
  const [program, ...args] = cfg.command as [string, ...string[]];
  return {
    kind: 'exec',
    target: { command: program },
    retry: undefined,
    send(event: ChangeEvent, signal: AbortSignal): Promise<NotifyOutcome> {
      return new Promise<NotifyOutcome>((resolve) => {
        let child: ChildProcess;
        try {
          child = spawn(program, args, {
            shell: false,
            env: execEnvironment(event),
            stdio: ['ignore', 'pipe', 'pipe'],
            // Its own process group, so a timeout kills what it started too.
            detached: true,
          });
        } catch (err) {
          // Invalid arguments throw at once (the schema refuses them; this keeps send from rejecting).
          resolve({ ok: false, reason: `cannot run ${program} (${errnoCode(err)})`, retryable: false });
          return;
        }
        const stdout = capture(child.stdout);
        const stderr = capture(child.stderr);
        let timedOut = false;
        const killGroup = (): void => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
          } catch {
            child.kill('SIGKILL');
          }
        };
        const timer = clock.setTimer(() => {
          timedOut = true;
          killGroup();
        }, cfg.timeoutMs);
        const onAbort = (): void => killGroup();
        signal.addEventListener('abort', onAbort, { once: true });
        let grace: { cancel(): void } | undefined;
        let settled = false;
        const done = (outcome: NotifyOutcome): void => {
          if (settled) return;
          settled = true;
          timer.cancel();
          grace?.cancel();
          signal.removeEventListener('abort', onAbort);
          resolve(outcome);
        };
        child.once('error', (err: NodeJS.ErrnoException) => {
          done({ ok: false, reason: `cannot run ${program} (${err.code ?? 'error'})`, retryable: false });
        });
        // A background process it started may hold the pipes open: after the exit, wait for them
        // briefly only (destroying them lets 'close' come).
        child.once('exit', () => {
          grace = clock.setTimer(() => {
            child.stdout?.destroy();
            child.stderr?.destroy();
          }, PIPE_GRACE_MS);
        });
        child.once('close', (code: number | null, sig: NodeJS.Signals | null) => {
          const detail = { exit_code: code, stdout: event.scrub(stdout()), stderr: event.scrub(stderr()) };
          if (timedOut) done({ ok: false, reason: `did not finish within ${cfg.timeoutMs} ms; killed`, retryable: false, detail });
          else if (signal.aborted) done({ ok: false, reason: 'killed at shutdown', retryable: false, detail });
          else if (code === 0) done({ ok: true, detail });
          else done({ ok: false, reason: code !== null ? `exited with code ${code}` : `killed by ${sig ?? 'a signal'}`, retryable: false, detail });
        });
      });
    },
  };
}
