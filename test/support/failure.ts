import { expect } from 'vitest';
import { TokendError } from '../../src/errors.js';

/** Awaits p expecting it to reject with a TokendError, and returns that error. */
export async function failure(p: Promise<unknown>): Promise<TokendError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TokendError);
  return err as TokendError;
}
