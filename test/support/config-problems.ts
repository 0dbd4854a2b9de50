import { expect } from 'vitest';
import { parseConfig, type Env } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

/** The problem lines parseConfig reports for `text` (fails the test when it accepts the text). */
export function problemsOf(text: string, env: Env = {}, source?: string): readonly string[] {
  try {
    parseConfig(text, { env, source });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the configuration to be refused');
}
