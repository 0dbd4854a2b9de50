import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { deliver } from '../../src/notify/deliver.js';
import { execNotifier, MAX_EXEC_OUTPUT_BYTES } from '../../src/notify/exec.js';
import type { ChangeEvent } from '../../src/notify/notifier.js';
import { OutputMetrics } from '../../src/output/metrics.js';
import { until } from '../support/until.js';
import { logSink } from './output-support.js';

const SECRET = 'eyJhbGciOi.secret-access-token.c2ln';
const EVENT: ChangeEvent = { name: 'orders', expiresAt: 1735689900, scrub: (t) => t.split(SECRET).join('[redacted]') };
const never = new AbortController().signal;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokend-exec-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A process is gone: no /proc entry, or a zombie waiting for a reaper. */
function gone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

describe('exec notifications', () => {
  it('passes arguments as they are, with no shell, and a minimal environment without the token', async () => {
    const script = join(dir, 'record.js');
    const record = join(dir, 'record.json');
    writeFileSync(script, `require('fs').writeFileSync(process.argv[2], JSON.stringify({ argv: process.argv.slice(3), env: process.env }));`);
    const pwned = join(dir, 'pwned');
    const args = [`; touch ${pwned}`, `$(touch ${pwned})`, `\`touch ${pwned}\``, `a b "c" 'd'`, '*'];
    const n = execNotifier({ command: [process.execPath, script, record, ...args], timeoutMs: 10_000 }, systemClock);
    const outcome = await n.send(EVENT, never);
    expect(outcome).toMatchObject({ ok: true, detail: { exit_code: 0 } });
    const seen = JSON.parse(readFileSync(record, 'utf8')) as { argv: string[]; env: Record<string, string> };
    expect(seen.argv).toEqual(args);
    expect(existsSync(pwned)).toBe(false);
    expect(Object.keys(seen.env).sort()).toEqual(['PATH', 'TOKEND_EVENT', 'TOKEND_EXPIRES_AT', 'TOKEND_TOKEN']);
    expect(seen.env).toMatchObject({ TOKEND_TOKEN: 'orders', TOKEND_EXPIRES_AT: '1735689900', TOKEND_EVENT: 'token.changed' });
    expect(JSON.stringify(seen)).not.toContain(SECRET);
  });

  it('kills the command and what it started when it overruns its timeout', async () => {
    const pids = join(dir, 'pids');
    const script = `
      const { spawn } = require('child_process');
      const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
      require('fs').writeFileSync(${JSON.stringify(pids)}, process.pid + ' ' + g.pid);
      setInterval(() => {}, 1000);`;
    const n = execNotifier({ command: [process.execPath, '-e', script], timeoutMs: 500 }, systemClock);
    const outcome = await n.send(EVENT, never);
    expect(outcome).toMatchObject({ ok: false, reason: 'did not finish within 500 ms; killed', retryable: false });
    const [pid, grandchild] = readFileSync(pids, 'utf8').split(' ').map(Number) as [number, number];
    expect(gone(pid)).toBe(true);
    await until(() => gone(grandchild), 'the grandchild to be killed', 5_000);
  });

  it('reports a failing command with its exit code and bounded, scrubbed output in the log', async () => {
    const sink = logSink();
    const metrics = OutputMetrics.on(new Registry());
    const script = `process.stdout.write('printed ${SECRET}\\n' + 'y'.repeat(20000)); process.stderr.write('reload refused'); process.exitCode = 3;`;
    const n = execNotifier({ command: [process.execPath, '-e', script], timeoutMs: 10_000 }, systemClock);
    await deliver(n, EVENT, { superseded: never, closing: never }, { clock: systemClock, random: () => 0.5, logger: sink.logger, metrics });
    const [failed] = sink.events('notify.failed');
    expect(failed).toMatchObject({ level: 'warn', notify: 'exec', command: process.execPath, reason: 'exited with code 3', exit_code: 3, stderr: 'reload refused', final: true });
    expect((failed!.stdout as string).startsWith('printed [redacted]\n')).toBe(true);
    expect((failed!.stdout as string).length).toBeLessThan(MAX_EXEC_OUTPUT_BYTES + 40);
    expect(failed!.stdout).toMatch(/… \(\d+ more bytes\)$/);
    expect(sink.raw.join('\n')).not.toContain(SECRET);
  });

  it('logs a successful command\'s output at debug, and a missing program as a failure', async () => {
    const sink = logSink();
    const metrics = OutputMetrics.on(new Registry());
    const deps = { clock: systemClock, random: () => 0.5, logger: sink.logger, metrics };
    await deliver(execNotifier({ command: [process.execPath, '-e', 'console.log("reloaded")'], timeoutMs: 10_000 }, systemClock), EVENT, { superseded: never, closing: never }, deps);
    expect(sink.events('notify.output')).toEqual([expect.objectContaining({ level: 'debug', stdout: 'reloaded\n' })]);
    expect(sink.events('notify.sent')).toEqual([expect.objectContaining({ level: 'info', notify: 'exec', exit_code: 0 })]);
    expect(sink.events('notify.sent')[0]).not.toHaveProperty('stdout');
    await deliver(execNotifier({ command: [join(dir, 'no-such-program')], timeoutMs: 10_000 }, systemClock), EVENT, { superseded: never, closing: never }, deps);
    expect(sink.events('notify.failed')).toEqual([expect.objectContaining({ reason: `cannot run ${join(dir, 'no-such-program')} (ENOENT)` })]);
  });
});
