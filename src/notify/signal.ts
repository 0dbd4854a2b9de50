/**
 * Signal notifications: the pid is read from a pid file at each delivery (the application may
 * have restarted with a new pid), so it works across containers sharing a process namespace
 * (Kubernetes shareProcessNamespace) as well as on one host.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { SignalNotifyConfig } from '../config/schema-output.js';
import { errnoCode } from '../errors.js';
import type { Notifier, NotifyOutcome } from './notifier.js';

/** Longest pid file read (bytes): a pid and some whitespace. */
const MAX_PID_FILE_BYTES = 64;
/** Linux's largest pid_max (2^22). */
const MAX_PID = 4_194_304;

/** The pid in a pid file's text, or why it is not one. Pure. */
export function parsePid(text: string): { pid: number } | { problem: string } {
  const m = /^\s*(\d{1,10})\s*$/.exec(text);
  if (m === null) return { problem: 'does not hold a process id' };
  const pid = Number(m[1]);
  // kill(0) signals our own process group, kill(1) init (or the pod's pause process): never.
  if (pid <= 1) return { problem: `holds pid ${pid}, which is never signalled` };
  if (pid > MAX_PID) return { problem: 'does not hold a valid process id' };
  return { pid };
}

async function readPidFile(path: string): Promise<string | { problem: string }> {
  let fh;
  try {
    // O_NONBLOCK: a FIFO planted at the path must not hang delivery.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? 'does not exist (is the process running?)' : `cannot be read (${code ?? 'error'})` };
  }
  try {
    if (!(await fh.stat()).isFile()) return { problem: 'is not a regular file' };
    const buf = Buffer.alloc(MAX_PID_FILE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_PID_FILE_BYTES) return { problem: 'is too large to be a pid file' };
    return buf.subarray(0, bytesRead).toString('latin1');
  } catch (err) {
    return { problem: `cannot be read (${errnoCode(err)})` };
  } finally {
    await fh.close();
  }
}

/** A notifier sending cfg.signal to the pid in cfg.pidFile. One attempt per change. */
export function signalNotifier(cfg: SignalNotifyConfig): Notifier {
  return {
    kind: 'signal',
    target: { signal: cfg.signal, pid_file: cfg.pidFile },
    retry: undefined,
    async send(): Promise<NotifyOutcome> {
      const text = await readPidFile(cfg.pidFile);
      if (typeof text !== 'string') return { ok: false, reason: `pid file ${cfg.pidFile} ${text.problem}`, retryable: false };
      const parsed = parsePid(text);
      if ('problem' in parsed) return { ok: false, reason: `pid file ${cfg.pidFile} ${parsed.problem}`, retryable: false };
      const { pid } = parsed;
      if (pid === process.pid) return { ok: false, reason: `pid file ${cfg.pidFile} names tokend itself`, retryable: false };
      try {
        process.kill(pid, cfg.signal);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ESRCH' ? `no process with pid ${pid}` : code === 'EPERM' ? `not permitted to signal pid ${pid}` : `kill failed (${code ?? 'error'})`;
        return { ok: false, reason: why, retryable: false, detail: { pid } };
      }
      return { ok: true, detail: { pid } };
    },
  };
}
