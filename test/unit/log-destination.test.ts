import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AsyncLogDestination, createLogger, droppedLogLines } from '../../src/log.js';

/** A stream standing in for a pipe whose reader stalls: writes complete only when released. */
class StalledPipe extends Writable {
  readonly written: string[] = [];
  private held: Array<() => void> = [];
  constructor() {
    super({ highWaterMark: 1_024, decodeStrings: false });
  }
  override _write(chunk: string, _enc: BufferEncoding, done: (err?: Error) => void): void {
    this.written.push(chunk);
    this.held.push(() => done());
  }
  /** The reader catches up: every pending write completes, and later ones at once. */
  release(): void {
    this._write = (chunk: string, _enc, done) => {
      this.written.push(chunk);
      done();
    };
    for (const done of this.held.splice(0)) done();
  }
  lines(): string[] {
    return this.written.join('').split('\n').filter(Boolean);
  }
}

describe('AsyncLogDestination', () => {
  it('never blocks: beyond its buffer it drops lines and counts them', () => {
    const pipe = new StalledPipe();
    const dest = new AsyncLogDestination(pipe, 4_096);
    const line = `${'x'.repeat(99)}\n`;
    for (let i = 0; i < 200; i++) dest.write(line);
    // About 4 KiB were accepted (one line may exceed by its own length), the rest dropped.
    expect(pipe.writableLength).toBeLessThanOrEqual(4_096);
    expect(dest.droppedLines).toBeGreaterThan(150);
    expect(dest.droppedLines + pipe.writableLength / 100).toBeCloseTo(200, 0);
    expect(droppedLogLines(dest)).toBe(dest.droppedLines);
    expect(droppedLogLines({ write: () => undefined })).toBe(0);
  });

  it('logs one warning with the number dropped once the reader catches up', async () => {
    const pipe = new StalledPipe();
    const dest = new AsyncLogDestination(pipe, 4_096);
    const logger = createLogger('info', dest);
    for (let i = 0; i < 300; i++) logger.info({ event: 'token.refreshed', token: 'orders', n: i }, 'refreshed');
    const dropped = dest.droppedLines;
    expect(dropped).toBeGreaterThan(0);
    const drained = new Promise((r) => pipe.once('drain', r));
    pipe.release();
    await drained;
    const warnings = pipe.lines().map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'log.dropped');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', dropped, service: 'tokend' });
    // Writing goes on normally afterwards.
    logger.info({ event: 'token.refreshed' }, 'after');
    expect(pipe.lines().at(-1)).toContain('"msg":"after"');
  });

  it('flushes: calls back once everything written has been taken', async () => {
    const pipe = new StalledPipe();
    const dest = new AsyncLogDestination(pipe, 4_096);
    dest.write('{"a":1}\n');
    let flushed = false;
    dest.flush(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false);
    pipe.release();
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(true);
  });

  it('counts lines as dropped, without throwing, once the stream has failed (reader gone: EPIPE)', () => {
    const pipe = new StalledPipe();
    const dest = new AsyncLogDestination(pipe, 4_096);
    pipe.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    return new Promise<void>((resolve) =>
      setImmediate(() => {
        expect(() => dest.write('{"a":1}\n')).not.toThrow();
        expect(dest.droppedLines).toBe(1);
        resolve();
      }),
    );
  });
});
