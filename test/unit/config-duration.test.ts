import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DURATION_EXPECTED, formatDuration, parseDuration } from '../../src/config/duration.js';

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['10s', 10_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
    ['0s', 0],
    [' 15s ', 15_000],
    [30, 30_000],
    [0.5, 500],
    [0.001, 1],
    [0, 0],
  ] as const)('reads %j as %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it.each(['10', '', 'abc', '1.5s', '-1s', '10 s', '1h30m', '5M', '10sec', 's', '0x10s'])(
    'refuses the string %j',
    (input) => {
      expect(() => parseDuration(input)).toThrow(new RangeError(DURATION_EXPECTED));
    },
  );

  it('refuses negative, non-finite and sub-millisecond numbers', () => {
    expect(() => parseDuration(-1)).toThrow('not negative');
    expect(() => parseDuration(Number.NaN)).toThrow(DURATION_EXPECTED);
    expect(() => parseDuration(Number.POSITIVE_INFINITY)).toThrow(DURATION_EXPECTED);
    expect(() => parseDuration(0.0005)).toThrow('whole milliseconds');
  });

  it('refuses values beyond safe integers', () => {
    expect(() => parseDuration('99999999999999999d')).toThrow(DURATION_EXPECTED);
  });

  it('refuses anything that is neither string nor number', () => {
    expect(() => parseDuration(true as unknown as string)).toThrow(DURATION_EXPECTED);
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [1, '1ms'],
    [1_500, '1500ms'],
    [90_000, '90s'],
    [120_000, '2m'],
    [7_200_000, '2h'],
    [172_800_000, '2d'],
  ])('formats %d ms as %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });

  it('refuses fractional or negative milliseconds', () => {
    expect(() => formatDuration(1.5)).toThrow(RangeError);
    expect(() => formatDuration(-1)).toThrow(RangeError);
  });

  it('is inverted by parseDuration for every whole number of milliseconds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 45 }), (ms) => parseDuration(formatDuration(ms)) === ms),
      { numRuns: 2000 },
    );
  });

  it('agrees with the numeric (seconds) form for timer-sized durations', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (ms) => parseDuration(ms / 1000) === ms),
      { numRuns: 2000 },
    );
  });

  it('parses every unit as the matching multiple of milliseconds', () => {
    const units = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(...Object.keys(units)), (n, unit) => {
        return parseDuration(`${n}${unit}`) === n * units[unit as keyof typeof units];
      }),
    );
  });
});
