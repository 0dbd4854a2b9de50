import { afterEach, describe, expect, it, vi } from 'vitest';
// node-cron's own matcher (what its scheduler would run), as the reference for the next time.
// @ts-expect-error: an internal module of node-cron, without types
import { T as TimeMatcher } from '../../node_modules/node-cron/dist/_shared.js';
import { nextReconcileAt, parseReconcileCron, scheduleReconcile } from '../../src/reconcile-cron.js';

const nodeCronNext = (expr: string, after: number): number => (new TimeMatcher(expr) as { getNextMatch(d: Date): Date }).getNextMatch(new Date(after)).getTime();

const EXPRESSIONS = [
  '*/15 * * * * *',
  '* * * * * *',
  '*/5 * * * *',
  '7 */2 * * * *',
  '0 0 9-17/2 * * mon-fri',
  '30 45 23 * * *',
  '0 0 0 1 * *',
  '0 0 0 29 2 *',
  '0 0 12 * jan,jul sun',
  '0 30 2 * * *',
  '15,45 10-12 * * * 7',
];

describe('nextReconcileAt', () => {
  it('agrees with node-cron’s own matcher on every expression, from many starting times', () => {
    let seed = 42;
    const random = (): number => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (const expr of EXPRESSIONS) {
      const cron = parseReconcileCron(expr);
      for (let i = 0; i < 40; i++) {
        const after = Date.UTC(2024, 0, 1) + Math.floor(random() * 3 * 366 * 86_400_000) + (i % 2 === 0 ? 0 : 999);
        expect(nextReconcileAt(cron, after), `${expr} after ${new Date(after).toISOString()}`).toBe(nodeCronNext(expr, after));
      }
    }
  });

  it('in a time zone with daylight saving, finds the first second that matches by the local clock, across both changes', () => {
    // The reference is the definition itself, second by second. (node-cron's own matcher is off by
    // hours around these changes: for "0 */20 1-3 * * *" in the night of 29 March it skips 01:00 CET.)
    const bruteForce = (expr: string, after: number): number => {
      const c = parseReconcileCron(expr);
      for (let t = Math.floor(after / 1000) * 1000 + 1000; ; t += 1000) {
        const d = new Date(t);
        if (c.month.has(d.getMonth() + 1) && c.dayOfMonth.has(d.getDate()) && c.dayOfWeek.has(d.getDay()) && c.hour.has(d.getHours()) && c.minute.has(d.getMinutes()) && c.second.has(d.getSeconds())) return t;
      }
    };
    const saved = process.env.TZ;
    process.env.TZ = 'Europe/Berlin';
    try {
      for (const expr of ['0 0 * * * *', '*/15 * * * * *', '0 */20 1-3 * * *', '0 30 2 * * *']) {
        const cron = parseReconcileCron(expr);
        for (const day of [Date.UTC(2026, 2, 29), Date.UTC(2026, 9, 25)]) {
          for (let h = -2; h < 6; h += 0.25) {
            const after = day + h * 3_600_000;
            expect(nextReconcileAt(cron, after), `${expr} after ${new Date(after).toISOString()}`).toBe(bruteForce(expr, after));
          }
        }
      }
      // 02:30 does not exist on 29 March in Berlin: the next 02:30 that does.
      expect(nextReconcileAt(parseReconcileCron('0 30 2 * * *'), Date.UTC(2026, 2, 28, 23))).toBe(Date.UTC(2026, 2, 30, 0, 30));
      // The hour repeated on 25 October is visited twice.
      const hourly = parseReconcileCron('0 0 * * * *');
      expect(nextReconcileAt(hourly, Date.UTC(2026, 9, 25, 0, 0))).toBe(Date.UTC(2026, 9, 25, 1, 0));
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  });

  it('is strictly after the given time, on a whole second', () => {
    const cron = parseReconcileCron('*/15 * * * * *');
    expect(nextReconcileAt(cron, Date.UTC(2026, 0, 1, 0, 0, 15))).toBe(Date.UTC(2026, 0, 1, 0, 0, 30));
    expect(nextReconcileAt(cron, Date.UTC(2026, 0, 1, 0, 0, 14, 999))).toBe(Date.UTC(2026, 0, 1, 0, 0, 15));
  });
});

describe('parseReconcileCron refuses with a reason', () => {
  it.each([
    ['*/15 * *', /expected 5 or 6 fields/],
    ['0 0 0 30 2 *', /impossible day of month|never fires/],
    ['0 0 0 L * *', /dayOfMonth "L": calendar tokens/],
    ['0 0 0 * * 5L', /dayOfWeek "5L": calendar tokens/],
    ['0 0 0 * * 1#2', /dayOfWeek "1#2": calendar tokens/],
    ['61 * * * * *', /./],
  ])('%s', (expr, message) => {
    expect(() => parseReconcileCron(expr)).toThrow(message);
  });
});

describe('scheduleReconcile', () => {
  afterEach(() => void vi.useRealTimers());

  it('ticks at each matching second, and once (not a burst) after the clock steps forward', () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1, 0, 0, 1) });
    const ticks: number[] = [];
    const task = scheduleReconcile(parseReconcileCron('*/15 * * * * *'), () => ticks.push(Date.now()));
    vi.advanceTimersByTime(60_000);
    expect(ticks.map((t) => new Date(t).getUTCSeconds())).toEqual([15, 30, 45, 0]);
    // The wall clock jumps an hour ahead while a timer is pending.
    vi.setSystemTime(Date.now() + 3_600_000);
    ticks.length = 0;
    vi.advanceTimersByTime(15_000);
    expect(ticks).toHaveLength(1);
    task.stop();
    vi.advanceTimersByTime(60_000);
    expect(ticks).toHaveLength(1);
  });

  it('after the clock steps back an hour, ticks within a minute rather than an hour later', () => {
    vi.useFakeTimers({ now: Date.UTC(2026, 0, 1, 0, 0, 1) });
    const ticks: number[] = [];
    const task = scheduleReconcile(parseReconcileCron('*/15 * * * * *'), () => ticks.push(Date.now()));
    vi.setSystemTime(Date.now() - 3_600_000);
    vi.advanceTimersByTime(75_000);
    expect(ticks.length).toBeGreaterThanOrEqual(1);
    task.stop();
  });
});
