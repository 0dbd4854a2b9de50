import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NotifySignal } from '../../src/config/schema-output.js';
import type { ChangeEvent } from '../../src/notify/notifier.js';
import { parsePid, signalNotifier } from '../../src/notify/signal.js';

let dir: string;
let child: ChildProcess | undefined;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-signal-'));
});
afterEach(() => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = undefined;
  rmSync(dir, { recursive: true, force: true });
});

const EVENT: ChangeEvent = { name: 'orders', expiresAt: 1, scrub: (t) => t };
const abortNever = new AbortController().signal;

/** A node process that prints `ready`, then `got SIG...` for each of these signals it receives. */
async function recorder(signals: NotifySignal[]): Promise<{ child: ChildProcess; lines: string[] }> {
  const script = `
    for (const s of ${JSON.stringify(signals)}) process.on(s, () => process.stdout.write('got ' + s + '\\n'));
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  child = c;
  const lines: string[] = [];
  c.stdout!.setEncoding('utf8').on('data', (d: string) => lines.push(...d.split('\n').filter(Boolean)));
  while (!lines.includes('ready')) await once(c.stdout!, 'data');
  return { child: c, lines };
}

async function lineFrom(r: { child: ChildProcess; lines: string[] }, line: string): Promise<void> {
  while (!r.lines.includes(line)) await once(r.child.stdout!, 'data');
}

describe('signal notifications through a pid file', () => {
  it('delivers the signal to the process whose pid the file holds, read at each delivery', async () => {
    const r = await recorder(['SIGUSR1', 'SIGHUP']);
    const pidFile = join(dir, 'app.pid');
    writeFileSync(pidFile, `${r.child.pid}\n`);
    const n = signalNotifier({ signal: 'SIGUSR1', pidFile });
    expect(await n.send(EVENT, abortNever)).toEqual({ ok: true, detail: { pid: r.child.pid } });
    await lineFrom(r, 'got SIGUSR1');

    // The application restarted: the next delivery reads the new pid.
    const first = r.child;
    const r2 = await recorder(['SIGHUP']);
    writeFileSync(pidFile, String(r2.child.pid));
    expect(await signalNotifier({ signal: 'SIGHUP', pidFile }).send(EVENT, abortNever)).toMatchObject({ ok: true });
    await lineFrom(r2, 'got SIGHUP');
    expect(r.lines).not.toContain('got SIGHUP');
    first.kill('SIGKILL');
  });

  it('refuses pid 0 and 1, garbage, a missing file and tokend\'s own pid, saying which file', async () => {
    const pidFile = join(dir, 'app.pid');
    const cases: Array<[string | undefined, RegExp]> = [
      ['1\n', /holds pid 1, which is never signalled/],
      ['0', /holds pid 0, which is never signalled/],
      ['-1', /does not hold a process id/],
      ['12abc', /does not hold a process id/],
      ['', /does not hold a process id/],
      ['9999999999', /does not hold a valid process id/],
      ['99999999999', /does not hold a process id/],
      [String(process.pid), /names tokend itself/],
      [undefined, /does not exist/],
    ];
    for (const [content, why] of cases) {
      rmSync(pidFile, { force: true });
      if (content !== undefined) writeFileSync(pidFile, content);
      const outcome = await signalNotifier({ signal: 'SIGTERM', pidFile }).send(EVENT, abortNever);
      expect(outcome.ok, String(content)).toBe(false);
      if (!outcome.ok) {
        expect(outcome.reason).toContain(pidFile);
        expect(outcome.reason).toMatch(why);
        expect(outcome.retryable).toBe(false);
      }
    }
  });

  it('reports a process that is gone', async () => {
    const gone = spawn(process.execPath, ['-e', '']);
    await once(gone, 'exit');
    const pidFile = join(dir, 'app.pid');
    writeFileSync(pidFile, String(gone.pid));
    const outcome = await signalNotifier({ signal: 'SIGHUP', pidFile }).send(EVENT, abortNever);
    expect(outcome).toMatchObject({ ok: false, reason: `no process with pid ${gone.pid}` });
  });

  it('parsePid takes surrounding whitespace and nothing else', () => {
    expect(parsePid(' 4242 \n')).toEqual({ pid: 4242 });
    expect(parsePid('4242 4243')).toEqual({ problem: 'does not hold a process id' });
  });
});
