/**
 * The `reconcile` schedule: node-cron parses and validates the expression (its syntax: 5 or 6
 * fields, ranges, steps, lists, month and weekday names), and tokend computes the next time it
 * fires. Not node-cron's scheduler, because it formats every candidate time through
 * `Intl.DateTimeFormat` to support time zones, and that loads ICU's data: +6 to 8 MiB of RSS per
 * process (docs/performance.md) for a periodic check that needs no time zone. Times here are the
 * process's local time, as node-cron's are without a `timezone`, computed with Date's own fields.
 *
 * node-cron's calendar tokens (`L`, `W`, `L-n`, `nL`, `n#k`) are refused: a reconcile is a
 * periodic check, not a calendar event.
 */
import { parse as parseCron, validateDetailed } from 'node-cron';

/** The values each field allows. Months 1-12, weekdays 0-6 (Sunday 0). */
export interface ReconcileCron {
  readonly second: ReadonlySet<number>;
  readonly minute: ReadonlySet<number>;
  readonly hour: ReadonlySet<number>;
  readonly dayOfMonth: ReadonlySet<number>;
  readonly month: ReadonlySet<number>;
  readonly dayOfWeek: ReadonlySet<number>;
}

/** How far ahead a next time is looked for: an expression that never fires within it is refused. */
const HORIZON_MS = 5 * 366 * 24 * 3600_000;

/**
 * Parses a reconcile expression. Throws an Error whose message says what is wrong: node-cron's
 * own reason, a calendar token, or an expression that never fires (`0 0 0 30 2 *`).
 */
export function parseReconcileCron(expression: string): ReconcileCron {
  const checked = validateDetailed(expression);
  if (!checked.valid) throw new Error(checked.errors?.[0]?.message ?? 'not a cron expression');
  const parsed = parseCron(expression) as unknown as Record<keyof ReconcileCron, ReadonlyArray<number | string>>;
  const field = (name: keyof ReconcileCron): ReadonlySet<number> => {
    const values = parsed[name];
    const token = values.find((v) => typeof v !== 'number');
    if (token !== undefined) throw new Error(`${name} "${String(token)}": calendar tokens (L, W, #) are not supported for reconcile`);
    return new Set(values as number[]);
  };
  const cron: ReconcileCron = {
    second: field('second'),
    minute: field('minute'),
    hour: field('hour'),
    dayOfMonth: field('dayOfMonth'),
    month: field('month'),
    dayOfWeek: new Set([...field('dayOfWeek')].map((d) => d % 7)),
  };
  if (nextReconcileAt(cron, Date.UTC(2000, 0, 1)) === undefined) throw new Error('it never fires');
  return cron;
}

/**
 * The first time strictly after `afterMs` (whole seconds) at which every field matches, in local
 * time; undefined if there is none within five years. Skips by the largest unit that does not
 * match, so a year is a few hundred steps at most.
 */
export function nextReconcileAt(cron: ReconcileCron, afterMs: number): number | undefined {
  const d = new Date(Math.floor(afterMs / 1000) * 1000 + 1000);
  const limit = afterMs + HORIZON_MS;
  while (d.getTime() <= limit) {
    if (!cron.month.has(d.getMonth() + 1)) {
      d.setMonth(d.getMonth() + 1, 1);
      d.setHours(0, 0, 0, 0);
    } else if (!cron.dayOfMonth.has(d.getDate()) || !cron.dayOfWeek.has(d.getDay())) {
      d.setDate(d.getDate() + 1);
      d.setHours(0, 0, 0, 0);
    } else if (!cron.hour.has(d.getHours())) {
      // Within a day, step on the absolute clock: local hours, minutes and seconds start on UTC
      // minute boundaries (offsets are whole quarter hours), and the hour repeated when daylight
      // saving ends is visited twice, as it occurs.
      d.setTime(d.getTime() - (d.getMinutes() * 60 + d.getSeconds()) * 1000 + 3_600_000);
    } else if (!cron.minute.has(d.getMinutes())) {
      d.setTime(d.getTime() - d.getSeconds() * 1000 + 60_000);
    } else if (!cron.second.has(d.getSeconds())) {
      d.setTime(d.getTime() + 1000);
    } else {
      return d.getTime();
    }
  }
  return undefined;
}

/** The longest single wait: a wall-clock step is noticed within it. */
const MAX_WAIT_MS = 60_000;

/**
 * Calls `tick` at every time the expression matches, until stopped. Each wait is at most a minute
 * and the next time is recomputed from the wall clock on waking, so a clock step (or a suspended
 * VM) delays a tick by at most that, never fires a burst of missed ones.
 */
export function scheduleReconcile(cron: ReconcileCron, tick: () => void, now: () => number = Date.now): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let due = nextReconcileAt(cron, now());
  const arm = (): void => {
    if (due === undefined) return;
    timer = setTimeout(wake, Math.max(0, Math.min(due - now(), MAX_WAIT_MS)));
  };
  const wake = (): void => {
    const t = now();
    if (due === undefined) return;
    // A wake long after the due time (the clock stepped forward) runs one tick, not the missed
    // ones; an early wake (the one-minute cap, or the clock stepped back) recomputes the due time.
    if (t >= due) tick();
    due = nextReconcileAt(cron, t);
    arm();
  };
  arm();
  return {
    stop() {
      clearTimeout(timer);
      due = undefined;
    },
  };
}
