/**
 * A reverse proxy in front of a real IdP that rewrites what the IdP answers, so tests meet the
 * dialects and defects of other IdPs while the grant (and its refresh-token rotation) really
 * happens: the JSON of token answers can be rewritten, any path can be answered by the proxy
 * itself (429 with Retry-After, a 404, a huge body), and request bodies are recorded (to read the
 * client assertion the IdP received). The Host header is preserved, so an IdP configured with
 * the proxy's URL as its issuer builds endpoint URLs that point back at the proxy.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { listenOnLoopback } from './http-io.js';

/** Rewrites a parsed 200 JSON answer; returns the new body (any JSON value). */
export type JsonRewrite = (body: Record<string, unknown>) => unknown;

/** Answers a request in the proxy's place; return false to forward it. */
export type LocalAnswer = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface RewriteProxy {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  setTarget(targetUrl: string): void;
  /** Rewrites 200 JSON answers to POST requests on paths matching re (default /\/token$/); undefined: no rewriting. */
  rewriteToken(fn: JsonRewrite | undefined, re?: RegExp): void;
  /** Lets fn answer requests itself (undefined: forward everything). */
  answer(fn: LocalAnswer | undefined): void;
  /** Request bodies of POSTs seen so far on paths matching re, oldest first. */
  bodies(re: RegExp): string[];
  /** Requests seen so far on paths matching re. */
  count(re: RegExp): number;
  close(): Promise<void>;
}

/** Starts the proxy on 127.0.0.1 (OS-chosen port). */
export async function startRewriteProxy(targetUrl?: string): Promise<RewriteProxy> {
  let target = targetUrl ? new URL(targetUrl) : undefined;
  let rewrite: { fn: JsonRewrite; re: RegExp } | undefined;
  let local: LocalAnswer | undefined;
  const seen: Array<{ path: string; body: string }> = [];

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ path, body: body.toString('utf8') });
      if (local?.(req, res)) return;
      if (!target) return void res.writeHead(502).end();
      const rewriting = rewrite !== undefined && req.method === 'POST' && rewrite.re.test(path) ? rewrite.fn : undefined;
      const headers = { ...req.headers };
      if (rewriting) delete headers['accept-encoding'];
      const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
        if (!rewriting || up.statusCode !== 200) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          return void up.pipe(res);
        }
        const parts: Buffer[] = [];
        up.on('data', (c: Buffer) => parts.push(c));
        up.on('end', () => {
          let out = Buffer.concat(parts).toString('utf8');
          try {
            out = JSON.stringify(rewriting(JSON.parse(out) as Record<string, unknown>));
          } catch {
            // not JSON: passed on as it came
          }
          const { 'content-length': _len, 'transfer-encoding': _te, ...rest } = up.headers;
          res.writeHead(200, { ...rest, 'content-length': String(Buffer.byteLength(out)) }).end(out);
        });
      });
      upstream.on('error', () => {
        if (!res.headersSent) res.writeHead(502);
        res.end();
      });
      upstream.end(body);
    });
  });
  const { url, close } = await listenOnLoopback(server);

  return {
    url,
    setTarget(t) {
      target = new URL(t);
    },
    rewriteToken(fn, re = /\/token$/) {
      rewrite = fn ? { fn, re } : undefined;
    },
    answer(fn) {
      local = fn;
    },
    bodies: (re) => seen.filter((s) => re.test(s.path)).map((s) => s.body),
    count: (re) => seen.filter((s) => re.test(s.path)).length,
    close,
  };
}
