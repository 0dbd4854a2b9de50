import { beforeAll, describe, expect, it } from 'vitest';
import { FetchHeaders, FetchResponse, installFetchClasses } from '../../src/util/fetch-classes.js';

// Node's own classes, reached through an answer of node's fetch: the globals may already be
// tokend's (test/support/setup.ts installs them, as the CLI does).
let NodeHeaders: typeof Headers;
let NodeResponse: typeof Response;
beforeAll(async () => {
  const res = await fetch('data:,x');
  NodeResponse = res.constructor as typeof Response;
  NodeHeaders = res.headers.constructor as typeof Headers;
  expect(NodeResponse).not.toBe(FetchResponse);
});

type AnyHeaders = Headers | FetchHeaders;
const both = <T>(f: (H: new (init?: never) => AnyHeaders) => T): [T, T] => [f(NodeHeaders as never), f(FetchHeaders as never)];
const outcome = (f: () => unknown): unknown => {
  try {
    return { value: f() };
  } catch (err) {
    return { threw: (err as Error).constructor.name };
  }
};

describe('FetchHeaders behaves as node’s Headers', () => {
  const inits: unknown[] = [
    undefined,
    { 'Content-Type': 'application/json', Accept: 'a' },
    [
      ['X-B', '1'],
      ['x-a', ' 2 '],
      ['X-B', '3'],
    ],
    [
      ['set-cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['vary', 'x'],
    ],
  ];
  for (const init of inits) {
    it(`constructs from ${JSON.stringify(init)} with the same entries`, () => {
      const [a, b] = both((H) => [...new H(init as never).entries()]);
      expect(b).toEqual(a);
    });
  }

  it('constructs from another Headers (node’s or its own)', () => {
    const src = new NodeHeaders({ A: '1', b: '2' });
    expect([...new FetchHeaders(src as never).entries()]).toEqual([...src.entries()]);
    expect([...new FetchHeaders(new FetchHeaders({ A: '1' })).entries()]).toEqual([['a', '1']]);
  });

  it('append, set, get, has, delete, forEach and getSetCookie agree', () => {
    const [a, b] = both((H) => {
      const h = new H();
      h.append('Accept', 'x');
      h.append('accept', 'y');
      h.set('Authorization', 'Basic abc');
      h.append('Set-Cookie', 'c=1');
      h.append('set-cookie', 'd=2');
      const seen: string[] = [];
      h.forEach((v, k) => seen.push(`${k}=${v}`));
      const r = { accept: h.get('ACCEPT'), has: h.has('authorization'), missing: h.get('nope'), cookies: h.getSetCookie(), seen, keys: [...h.keys()], values: [...h.values()] };
      h.delete('Accept');
      return { ...r, after: [...h] };
    });
    expect(b).toEqual(a);
  });

  it('refuses the same invalid names and values, with a TypeError', () => {
    const cases: [string, string][] = [
      ['bad name', 'v'],
      ['', 'v'],
      ['x', 'a\r\nInjected: 1'],
      ['x', 'a\0b'],
      ['é', 'v'],
    ];
    for (const [name, value] of cases) {
      const [a, b] = both((H) => outcome(() => new H().append(name, value)));
      expect(b, `${name}: ${JSON.stringify(value)}`).toEqual(a);
      expect(b).toEqual({ threw: 'TypeError' });
    }
    expect(outcome(() => new FetchHeaders([['only-one']] as never))).toEqual({ threw: 'TypeError' });
  });

  it('is what node’s fetch accepts as request headers, and reports itself as Headers', async () => {
    expect(Object.prototype.toString.call(new FetchHeaders())).toBe('[object Headers]');
    const h = new FetchHeaders({ 'x-one': '1' });
    expect(Object.fromEntries(new NodeHeaders(h as never))).toEqual({ 'x-one': '1' });
  });
});

describe('FetchResponse behaves as node’s Response', () => {
  const read = async (R: typeof Response | typeof FetchResponse, body: unknown, init?: ResponseInit) => {
    const r = new (R as typeof Response)(body as BodyInit, init);
    return { status: r.status, ok: r.ok, statusText: r.statusText, type: r.headers.get('content-type'), text: await r.text(), used: r.bodyUsed };
  };

  it('reads string, bytes, URLSearchParams, stream and null bodies alike', async () => {
    const stream = () =>
      new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode('{"a":'));
          c.enqueue(new TextEncoder().encode('1}'));
          c.close();
        },
      });
    for (const body of ['héllo', new TextEncoder().encode('bytes'), new URLSearchParams({ a: '1 2' }), null]) {
      expect(await read(FetchResponse, body, { status: 201, statusText: 'Created' })).toEqual(await read(NodeResponse, body, { status: 201, statusText: 'Created' }));
    }
    expect(await read(FetchResponse, stream(), { headers: { 'content-type': 'application/json' } })).toEqual(
      await read(NodeResponse, stream(), { headers: { 'content-type': 'application/json' } }),
    );
    expect(await new FetchResponse(stream()).json()).toEqual({ a: 1 });
  });

  it('a body is read once; clone before reading gives two readers', async () => {
    const r = new FetchResponse('{"x":1}', { status: 400 });
    const copy = r.clone();
    expect(await copy.json()).toEqual({ x: 1 });
    expect(r.bodyUsed).toBe(false);
    expect(await r.text()).toBe('{"x":1}');
    expect(r.bodyUsed).toBe(true);
    await expect(r.text()).rejects.toThrow(TypeError);
    expect(() => r.clone()).toThrow(TypeError);

    const s = new FetchResponse(new Response('streamed').body);
    const t = s.clone();
    expect([await s.text(), await t.text()]).toEqual(['streamed', 'streamed']);
  });

  it('reading through body marks it used, as openid-client checks', async () => {
    const r = new FetchResponse('abc');
    const reader = r.body!.getReader();
    expect(r.bodyUsed).toBe(true);
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('abc');
    await expect(new FetchResponse('x').body!.cancel()).resolves.toBeUndefined();
  });

  it('refuses statuses and bodies node refuses, with the same error classes', () => {
    const cases: [unknown, ResponseInit][] = [
      [null, { status: 199 }],
      [null, { status: 600 }],
      [null, { status: 200.5 }],
      ['body', { status: 204 }],
      ['body', { status: 304 }],
      [null, { status: 200, statusText: 'bad\nline' }],
    ];
    for (const [body, init] of cases) {
      const a = outcome(() => new NodeResponse(body as BodyInit, init).status);
      const b = outcome(() => new FetchResponse(body as string, init).status);
      expect(b, JSON.stringify(init)).toEqual(a);
    }
    expect(new FetchResponse(null, { status: 204 }).body).toBeNull();
  });

  it('a JSON syntax error surfaces as a SyntaxError, as node’s does', async () => {
    await expect(new FetchResponse('{nope').json()).rejects.toThrow(SyntaxError);
    await expect(new NodeResponse('{nope').json()).rejects.toThrow(SyntaxError);
    // A UTF-8 byte-order mark is not part of the JSON.
    expect(await new FetchResponse(new Uint8Array([0xef, 0xbb, 0xbf, 0x5b, 0x5d])).json()).toEqual([]);
  });

  it('reports itself as Response, so openid-client’s instance check accepts it', () => {
    expect(Object.prototype.toString.call(new FetchResponse())).toBe('[object Response]');
  });
});

describe('installFetchClasses', () => {
  it('replaces Headers and Response on the target and leaves fetch alone', () => {
    const target = { Headers: 1, Response: 2, fetch: 3 } as unknown as typeof globalThis;
    installFetchClasses(target);
    expect(target.Headers).toBe(FetchHeaders);
    expect(target.Response).toBe(FetchResponse);
    expect(target.fetch).toBe(3);
  });
});
