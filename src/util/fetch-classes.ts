/**
 * Headers and Response for the daemon's process, in place of node's own. openid-client needs
 * these two classes (it builds request headers with `new Headers`, checks that an answer is a
 * `Response` and reads it with `json()`/`text()`), and node defines them lazily: the first touch
 * of either global loads node's whole bundled undici, ~13 MiB of RSS on Node 24 that tokend, whose
 * requests go over node:http (oauth/pooled-fetch.ts), never uses otherwise (bench/footprint.mjs,
 * docs/performance.md). These follow the Fetch standard for what they implement: header names
 * validated and lower-cased, values trimmed and checked, iteration sorted with `set-cookie` kept
 * apart; a body read once (`bodyUsed`), `clone()` before reading, statuses 200-599, no body on
 * 101/204/205/304. Not implemented, because nothing in the daemon asks for them: `formData()`,
 * `blob()`, `Response.redirect/json/error`, and the guard that makes a Response's headers
 * immutable.
 *
 * `installFetchClasses` puts them on globalThis without running node's lazy globals (which would
 * load undici). The CLI does it before anything else runs; `fetch`, `Request`
 * and `FormData` stay node's, so code that uses the global fetch (an HTTP notifier without an
 * injected fetch) still works, loading undici then.
 */

// RFC 9110 token characters: what a header name may contain.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// A header value may not contain NUL, CR or LF (the Fetch standard's "header value").
const BAD_VALUE = /[\0\r\n]/;
// Leading and trailing HTTP whitespace, removed from values ("normalize").
const EDGE_WHITESPACE = /^[\t\n\r ]+|[\t\n\r ]+$/g;

type HeadersInput = Iterable<readonly [string, string]> | Record<string, string> | FetchHeaders | undefined | null;

function headerName(name: string): string {
  const s = String(name);
  if (!TOKEN.test(s)) throw new TypeError(`Headers: invalid header name ${JSON.stringify(s.slice(0, 64))}`);
  return s.toLowerCase();
}

function headerValue(value: string): string {
  const s = String(value).replace(EDGE_WHITESPACE, '');
  if (BAD_VALUE.test(s)) throw new TypeError('Headers: a header value may not contain NUL, CR or LF');
  return s;
}

export class FetchHeaders {
  // Lower-cased name -> its values in the order appended.
  readonly #fields = new Map<string, string[]>();

  constructor(init?: HeadersInput) {
    if (init === undefined || init === null) return;
    if (typeof init !== 'object') throw new TypeError('Headers: init must be an object, an iterable of pairs or Headers');
    if (Symbol.iterator in init) {
      for (const pair of init as Iterable<readonly [string, string]>) {
        const entry = [...(pair as Iterable<string>)];
        if (entry.length !== 2) throw new TypeError('Headers: each header must be a [name, value] pair');
        this.append(entry[0] as string, entry[1] as string);
      }
      return;
    }
    for (const [name, value] of Object.entries(init)) this.append(name, value);
  }

  append(name: string, value: string): void {
    const key = headerName(name);
    const v = headerValue(value);
    const values = this.#fields.get(key);
    if (values) values.push(v);
    else this.#fields.set(key, [v]);
  }

  set(name: string, value: string): void {
    this.#fields.set(headerName(name), [headerValue(value)]);
  }

  get(name: string): string | null {
    return this.#fields.get(headerName(name))?.join(', ') ?? null;
  }

  getSetCookie(): string[] {
    return [...(this.#fields.get('set-cookie') ?? [])];
  }

  has(name: string): boolean {
    return this.#fields.has(headerName(name));
  }

  delete(name: string): void {
    this.#fields.delete(headerName(name));
  }

  forEach(callback: (value: string, name: string, parent: FetchHeaders) => void, thisArg?: unknown): void {
    for (const [name, value] of this) callback.call(thisArg, value, name, this);
  }

  *entries(): IterableIterator<[string, string]> {
    for (const name of [...this.#fields.keys()].sort()) {
      const values = this.#fields.get(name)!;
      if (name === 'set-cookie') for (const v of values) yield [name, v];
      else yield [name, values.join(', ')];
    }
  }

  *keys(): IterableIterator<string> {
    for (const [name] of this.entries()) yield name;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return 'Headers';
  }
}

type BodyInput = string | Uint8Array | ArrayBuffer | URLSearchParams | ReadableStream<Uint8Array> | null | undefined;

export interface FetchResponseInit {
  readonly status?: number | undefined;
  readonly statusText?: string | undefined;
  readonly headers?: HeadersInput;
}

/** Statuses whose answers have no body (the Fetch standard's "null body status"). */
export const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 204, 205, 304]);
// A reason phrase: no CR, LF or characters outside Latin-1 (the Fetch standard's check).
const BAD_STATUS_TEXT = /[\r\n]|[^\t\x20-\x7e\x80-\xff]/;

/** The body as bytes or a stream, and the content type the Fetch standard gives that kind. */
function extractBody(body: BodyInput): { bytes?: Uint8Array; stream?: ReadableStream<Uint8Array>; type?: string } {
  if (body === undefined || body === null) return {};
  if (typeof body === 'string') return { bytes: new TextEncoder().encode(body), type: 'text/plain;charset=UTF-8' };
  if (body instanceof URLSearchParams) return { bytes: new TextEncoder().encode(body.toString()), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
  if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body.slice(0)) };
  if (ArrayBuffer.isView(body)) return { bytes: new Uint8Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)) };
  if (typeof (body as ReadableStream).getReader === 'function') return { stream: body as ReadableStream<Uint8Array> };
  throw new TypeError('Response: the body must be a string, bytes, URLSearchParams or a ReadableStream');
}

function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/**
 * Reads a stream to its end into one array. Past maxBytes it cancels the stream and returns
 * undefined, so an oversized answer is never held whole.
 */
export async function readStream(stream: ReadableStream<Uint8Array>, maxBytes = Infinity): Promise<Uint8Array<ArrayBuffer> | undefined> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.byteLength;
    if (length > maxBytes) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

export class FetchResponse {
  readonly status: number;
  readonly statusText: string;
  readonly headers: FetchHeaders;
  readonly url = '';
  readonly redirected = false;
  readonly type = 'default';
  // Bytes until someone asks for `body`, then only the stream.
  #bytes: Uint8Array | undefined;
  #stream: ReadableStream<Uint8Array> | undefined;
  #used = false;

  constructor(body?: BodyInput, init: FetchResponseInit = {}) {
    // WebIDL's unsigned short: truncated, modulo 2^16 (so 200.5 is 200), then range-checked.
    const n = Math.trunc(Number(init.status ?? 200));
    const status = Number.isFinite(n) ? ((n % 65536) + 65536) % 65536 : 0;
    if (status < 200 || status > 599) throw new RangeError(`Response: status ${String(status)} is not in 200-599`);
    const statusText = init.statusText ?? '';
    if (BAD_STATUS_TEXT.test(statusText)) throw new TypeError('Response: invalid statusText');
    this.status = status;
    this.statusText = statusText;
    this.headers = new FetchHeaders(init.headers);
    const extracted = extractBody(body);
    if ((extracted.bytes !== undefined || extracted.stream !== undefined) && NULL_BODY_STATUSES.has(status)) {
      throw new TypeError(`Response: a ${status} answer cannot have a body`);
    }
    this.#bytes = extracted.bytes;
    this.#stream = extracted.stream;
    if (extracted.type !== undefined && !this.headers.has('content-type')) this.headers.set('content-type', extracted.type);
  }

  get ok(): boolean {
    return this.status >= 200 && this.status <= 299;
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#bytes !== undefined) {
      this.#stream = streamOf(this.#bytes);
      this.#bytes = undefined;
    }
    return this.#stream ?? null;
  }

  get bodyUsed(): boolean {
    return this.#used || (this.#stream?.locked ?? false);
  }

  async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (this.bodyUsed) throw new TypeError('Body is unusable: Body has already been read');
    // No body at all is never "used": it reads as empty, any number of times.
    if (this.#bytes === undefined && this.#stream === undefined) return new Uint8Array(0);
    this.#used = true;
    if (this.#bytes !== undefined) return new Uint8Array(this.#bytes) as Uint8Array<ArrayBuffer>;
    return (await readStream(this.#stream!))!;
  }

  async arrayBuffer(): Promise<ArrayBuffer> {
    return (await this.bytes()).buffer;
  }

  async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text()) as unknown;
  }

  clone(): FetchResponse {
    if (this.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    const copy = new FetchResponse(null, { status: this.status, statusText: this.statusText, headers: this.headers });
    if (this.#bytes !== undefined) copy.#bytes = this.#bytes;
    else if (this.#stream !== undefined) [this.#stream, copy.#stream] = this.#stream.tee();
    return copy;
  }

  get [Symbol.toStringTag](): string {
    return 'Response';
  }
}

/**
 * Whether value is an HTTP answer, judged by shape rather than class: the daemon's Response is
 * FetchResponse, while a fetch a caller supplies may answer with node's.
 */
export function isResponse(value: unknown): value is Response {
  const v = value as { status?: unknown; headers?: { get?: unknown } } | null;
  return typeof v === 'object' && v !== null && typeof v.status === 'number' && typeof v.headers?.get === 'function';
}

/**
 * Makes FetchHeaders and FetchResponse the process's Headers and Response (see the module
 * comment), without running node's lazy getters.
 */
export function installFetchClasses(target: typeof globalThis = globalThis): void {
  for (const [name, value] of [
    ['Headers', FetchHeaders],
    ['Response', FetchResponse],
  ] as const) {
    // Deleting first: redefining node's lazy property would load undici to read its old value.
    delete (target as unknown as Record<string, unknown>)[name];
    Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });
  }
}
