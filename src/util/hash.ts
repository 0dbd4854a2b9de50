import { createHash } from 'node:crypto';

/** SHA-256 (hex) of a secret, so it can be compared and stored without keeping the value. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
