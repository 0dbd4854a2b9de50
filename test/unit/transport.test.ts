import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokendError } from '../../src/errors.js';
import { displayUrl, newRecord, operationFetch } from '../../src/oauth/transport.js';

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    if (req.url === '/token') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-idp': 'yes' }).end('{"access_token":"a","token_type":"N_A","refresh_token":"rt-2","id_token":"x"}');
    } else if (req.url === '/busy') {
      res.writeHead(429, { 'retry-after': '9' }).end();
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"id_token":"x","refresh_token":null}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const init = { method: 'POST', headers: {}, body: undefined, redirect: 'manual' as const, signal: AbortSignal.timeout(2_000) };

describe('operationFetch', () => {
  it('inspects the token endpoint however the metadata spells it, and refuses a non-Bearer type carrying the new refresh token', async () => {
    const record = newRecord();
    const f = operationFetch({ fetch, phase: 'grant', tokenName: 'orders', tokenEndpoint: `${base}/x/../token` }, record);
    const err = await f(`${base}/token`, init).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokendError);
    expect((err as TokendError).reason).toBe('unsupported_token_type');
    expect((err as TokendError).rotatedRefreshToken).toBe('rt-2');
    expect(record.answer).toEqual({ refreshToken: 'rt-2', tokenType: 'N_A' });
    expect(record.exchanges).toEqual([{ method: 'POST', url: `${base}/token`, status: 200 }]);
  });

  it('hands on status and headers; other URLs are not inspected', async () => {
    const record = newRecord();
    const f = operationFetch({ fetch, phase: 'grant', tokenName: 'orders', tokenEndpoint: `${base}/token` }, record);
    const busy = await f(`${base}/busy`, init);
    expect([busy.status, busy.headers.get('retry-after'), busy.url]).toEqual([429, '9', '']);
    const other = await f(`${base}/other`, init);
    expect(await other.text()).toBe('{"id_token":"x","refresh_token":null}');
    expect(record.answer).toBeUndefined();
    expect(record.exchanges.map((e) => e.status)).toEqual([429, 200]);
  });

  it('records a request that got no answer without a status', async () => {
    const record = newRecord();
    const f = operationFetch({ fetch, phase: 'discovery' }, record);
    const ctl = new AbortController();
    ctl.abort(new Error('stop'));
    await expect(f(`${base}/other`, { ...init, signal: ctl.signal })).rejects.toThrow('stop');
    expect(record.exchanges).toEqual([{ method: 'POST', url: `${base}/other` }]);
  });

  it('shows URLs without query, fragment or credentials', () => {
    expect(displayUrl('https://user:pw@idp.example/realms/a/token?client_secret=s#f')).toBe('https://idp.example/realms/a/token');
    expect(displayUrl('not a url')).toBe('an invalid URL');
    expect(displayUrl(`https://idp.example/${'a'.repeat(1000)}`)).toBe(`https://idp.example/${'a'.repeat(256 - 20)}…`);
  });
});
