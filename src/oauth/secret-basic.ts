/**
 * client_secret_basic as the servers in the field read it. RFC 6749 §2.3.1 says the client id and
 * secret are form-urlencoded before they go into the Basic header; openid-client does that to the
 * letter and also escapes `-`, `_`, `.`, `~`, so `tokend-client` arrives as `tokend%2Dclient`. A
 * server that decodes gets the same value back either way, but many (Spring's older defaults,
 * Express `basic-auth` servers, appliances) compare the raw bytes and answer invalid_client.
 * tokend therefore encodes only what must be encoded: a value made of RFC 3986 unreserved
 * characters is sent as it is (decoding it is a no-op, so decoding servers agree); anything else
 * is form-urlencoded, because a raw `:` would split the pair, and a raw `%` or `+` would be
 * mangled by a decoding server.
 */
import type { ClientAuth } from 'openid-client';

/** RFC 3986 §2.3 unreserved characters. */
const UNRESERVED = /^[A-Za-z0-9\-._~]*$/;

/**
 * The form of value that goes into a Basic header: unchanged when it has only unreserved
 * characters, else application/x-www-form-urlencoded (space as `+`, UTF-8 percent-encoded).
 */
export function encodeBasicCredential(value: string): string {
  if (UNRESERVED.test(value)) return value;
  return new URLSearchParams([['', value]]).toString().slice(1);
}

/** The Authorization header value for clientId and secret (see encodeBasicCredential). */
export function basicAuthorization(clientId: string, secret: string): string {
  const pair = `${encodeBasicCredential(clientId)}:${encodeBasicCredential(secret)}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

/** tokend's client_secret_basic for openid-client: like ClientSecretBasic, without over-encoding. */
export function clientSecretBasic(secret: string): ClientAuth {
  return (_as, client, _body, headers) => {
    headers.set('authorization', basicAuthorization(client.client_id, secret));
  };
}
