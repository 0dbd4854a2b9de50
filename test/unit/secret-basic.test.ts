import { describe, expect, it } from 'vitest';
import { basicAuthorization, encodeBasicCredential } from '../../src/oauth/secret-basic.js';

describe('client_secret_basic encoding (RFC 6749 §2.3.1, without over-encoding)', () => {
  it.each([
    ['tokend-client', 'tokend-client'],
    ['a_b.c~d-E9', 'a_b.c~d-E9'],
    ['', ''],
    ['team:orders', 'team%3Aorders'],
    ['p%ss', 'p%25ss'],
    ['a+b c', 'a%2Bb+c'],
    ['ü-client', '%C3%BC-client'],
    ['a/b=c&d', 'a%2Fb%3Dc%26d'],
    // Once anything must be encoded, the whole value is form-urlencoded (~ included), which a decoding server undoes.
    ['x~y:z', 'x%7Ey%3Az'],
  ])('%j → %j', (value, expected) => {
    expect(encodeBasicCredential(value)).toBe(expected);
    // What a decoding server reads back is always the original value.
    expect(decodeURIComponent(encodeBasicCredential(value).replace(/\+/g, '%20'))).toBe(value);
  });

  it('builds the header from the two encoded values', () => {
    expect(basicAuthorization('tokend-client', 's.e_c-r~et')).toBe(`Basic ${Buffer.from('tokend-client:s.e_c-r~et').toString('base64')}`);
    expect(basicAuthorization('id', 'a:b')).toBe(`Basic ${Buffer.from('id:a%3Ab').toString('base64')}`);
  });
});
