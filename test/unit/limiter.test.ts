import { describe, expect, it } from 'vitest';
import { TokendError } from '../../src/errors.js';
import { GrantLimiter } from '../../src/oauth/limiter.js';
import { FakeClock, flushMicrotasks } from '../support/fake-clock.js';

/** A job the test finishes by hand. */
function job(): { run: () => Promise<string>; finish: () => void; started: boolean } {
  let finish!: () => void;
  const j = {
    started: false,
    finish: () => finish(),
    run: () => {
      j.started = true;
      return new Promise<string>((r) => {
        finish = () => r('done');
      });
    },
  };
  return j;
}

const opts = { waitMs: 10_000, label: 'token "t"' };

describe('GrantLimiter', () => {
  it('runs at most `concurrency` at once and hands a freed slot to the longest waiter', async () => {
    const clock = new FakeClock();
    const limiter = new GrantLimiter({ concurrency: 2, clock, origin: 'https://idp.example' });
    const jobs = [job(), job(), job(), job()];
    const results = jobs.map((j) => limiter.run(j.run, opts));
    await flushMicrotasks();
    expect(jobs.map((j) => j.started)).toEqual([true, true, false, false]);
    expect([limiter.inFlight, limiter.queued]).toEqual([2, 2]);
    jobs[1]?.finish();
    await flushMicrotasks();
    expect(jobs.map((j) => j.started)).toEqual([true, true, true, false]);
    expect([limiter.inFlight, limiter.queued]).toEqual([2, 1]);
    jobs[0]?.finish();
    jobs[2]?.finish();
    await flushMicrotasks();
    expect(jobs[3]?.started).toBe(true);
    jobs[3]?.finish();
    expect(await Promise.all(results)).toEqual(['done', 'done', 'done', 'done']);
    expect([limiter.inFlight, limiter.queued]).toEqual([0, 0]);
  });

  it('while paused by a Retry-After, refuses at once with the time left, then runs again', async () => {
    const clock = new FakeClock();
    const limiter = new GrantLimiter({ concurrency: 4, clock, origin: 'https://idp.example' });
    limiter.pause(30_000);
    limiter.pause(5_000); // never shortens
    await clock.advance(10_000);
    const err = await limiter.run(async () => 'x', opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).code).toBe('GRANT_TRANSIENT');
    expect((err as TokendError).reason).toBe('idp_paused');
    expect((err as TokendError).retryAfterMs).toBe(20_000);
    expect((err as TokendError).message).toBe('token "t": grant not attempted: https://idp.example asked tokend to wait (Retry-After); 20 s left');
    await clock.advance(20_000);
    expect(limiter.pausedForMs()).toBe(0);
    expect(await limiter.run(async () => 'x', opts)).toBe('x');
  });

  it('a waiter woken while a pause is in force gives its slot on and is refused', async () => {
    const clock = new FakeClock();
    const limiter = new GrantLimiter({ concurrency: 1, clock, origin: 'https://idp.example' });
    const first = job();
    const running = limiter.run(first.run, opts);
    const waiting = limiter.run(async () => 'second', opts).catch((e: unknown) => e);
    await flushMicrotasks();
    limiter.pause(1_000);
    first.finish();
    await running;
    expect(((await waiting) as TokendError).reason).toBe('idp_paused');
    expect([limiter.inFlight, limiter.queued]).toEqual([0, 0]);
  });

  it('gives up waiting for a slot after waitMs (idp_busy), or when the caller aborts, without leaking the slot', async () => {
    const clock = new FakeClock();
    const limiter = new GrantLimiter({ concurrency: 1, clock, origin: 'https://idp.example' });
    const blocker = job();
    const running = limiter.run(blocker.run, opts);
    const timedOut = limiter.run(async () => 'late', { ...opts, waitMs: 2_000 }).catch((e: unknown) => e);
    const ctl = new AbortController();
    const aborted = limiter.run(async () => 'late', { ...opts, signal: ctl.signal }).catch((e: unknown) => e);
    await flushMicrotasks();
    expect(limiter.queued).toBe(2);
    ctl.abort(new Error('stopping'));
    expect(((await aborted) as Error).message).toBe('stopping');
    await clock.advance(2_000);
    const busy = (await timedOut) as TokendError;
    expect(busy.reason).toBe('idp_busy');
    expect(busy.message).toBe('token "t": grant not attempted: 1 grants to https://idp.example were in flight for 2 s');
    blocker.finish();
    await running;
    expect([limiter.inFlight, limiter.queued]).toEqual([0, 0]);
    expect(await limiter.run(async () => 'free', opts)).toBe('free');
  });

  it('frees the slot when the operation fails', async () => {
    const limiter = new GrantLimiter({ concurrency: 1, clock: new FakeClock(), origin: 'https://idp.example' });
    await expect(limiter.run(async () => Promise.reject(new Error('boom')), opts)).rejects.toThrow('boom');
    expect(limiter.inFlight).toBe(0);
  });
});
