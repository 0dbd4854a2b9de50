/**
 * The egress proxy in front of an https upstream whose certificate comes from a test CA made with
 * openssl at test time: the CA file, mutual TLS with a client certificate, and the failures an
 * operator meets (unknown CA, missing client certificate, a handshake that never completes, files
 * that cannot be used).
 */
import net from 'node:net';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokendError } from '../../src/errors.js';
import { makePki, send, startIdp, startTokend, startUpstream, type Idp, type TestPki, type Upstream } from './proxy-fixtures.js';

const proxyYaml = (upstream: string, extra: Record<string, string> = {}): string =>
  [`  - listen: 127.0.0.1:0`, `    upstream: ${upstream}`, `    token: orders`, ...Object.entries(extra).map(([k, v]) => `    ${k}: ${v}`)].join('\n');

describe('egress proxy: https upstreams', () => {
  let idp: Idp;
  let pki: TestPki;
  let upstream: Upstream;
  let mtls: Upstream;
  beforeAll(async () => {
    pki = makePki();
    [idp, upstream, mtls] = await Promise.all([
      startIdp(300),
      startUpstream({ cert: pki.serverCert, key: pki.serverKey }),
      startUpstream({ cert: pki.serverCert, key: pki.serverKey, ca: pki.ca, requestCert: true, rejectUnauthorized: true }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([idp?.close(), upstream?.close(), mtls?.close()]);
    pki?.cleanup();
  });

  it('verifies the upstream against caFile and sends the token over TLS, reusing the connection', async () => {
    const t = await startTokend(idp, proxyYaml(`${upstream.url}/v2`, { caFile: pki.caFile }));
    try {
      const before = upstream.seen.length;
      const answers = [await send(t.proxyUrl, '/a'), await send(t.proxyUrl, '/b')];
      expect(answers.map((a) => a.status)).toEqual([200, 200]);
      const seen = upstream.seen.slice(before);
      expect(seen.map((s) => s.url)).toEqual(['/v2/a', '/v2/b']);
      for (const s of seen) expect(s.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
      // One pooled connection, kept alive between the two requests (no second handshake).
      expect(seen[1]!.remotePort).toBe(seen[0]!.remotePort);
    } finally {
      await t.stop();
    }
  });

  it('refuses an upstream whose certificate the configured roots do not vouch for: 502, nothing sent', async () => {
    const t = await startTokend(idp, proxyYaml(upstream.url));
    try {
      const before = upstream.seen.length;
      const a = await send(t.proxyUrl, '/');
      expect(a.status).toBe(502);
      expect(JSON.parse(a.body)).toEqual({ error: 'upstream_unreachable', message: 'TLS handshake with the upstream failed' });
      expect(t.events('proxy.upstream_failed')[0]).toMatchObject({ error: 'tls' });
      expect(upstream.seen.length).toBe(before);
    } finally {
      await t.stop();
    }
  });

  it('presents certFile/keyFile to an upstream that requires mutual TLS', async () => {
    const t = await startTokend(idp, proxyYaml(mtls.url, { caFile: pki.caFile, certFile: pki.clientCertFile, keyFile: pki.clientKeyFile }));
    try {
      const a = await send(t.proxyUrl, '/mtls');
      expect(a.status).toBe(200);
      const s = mtls.seen.at(-1)!;
      expect(s.clientCn).toBe('tokend-client');
      expect(s.headers.get('authorization')).toEqual([`Bearer ${t.token()}`]);
    } finally {
      await t.stop();
    }
  });

  it('gets 502 from an mTLS upstream without a client certificate, or with one from another CA', async () => {
    const variants: Array<Record<string, string>> = [{ caFile: pki.caFile }, { caFile: pki.caFile, certFile: pki.strangerCertFile, keyFile: pki.strangerKeyFile }];
    for (const extra of variants) {
      const t = await startTokend(idp, proxyYaml(mtls.url, extra));
      try {
        const before = mtls.seen.length;
        const a = await send(t.proxyUrl, '/mtls');
        expect(a.status).toBe(502);
        expect(['upstream_unreachable', 'upstream_failed']).toContain(JSON.parse(a.body).error);
        expect(mtls.seen.length).toBe(before);
      } finally {
        await t.stop();
      }
    }
  });

  it('answers 504 when the TLS handshake does not complete within connectTimeout', async () => {
    const silent = net.createServer((s) => s.on('error', () => undefined)); // accepts, never speaks TLS
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as net.AddressInfo).port;
    const t = await startTokend(idp, proxyYaml(`https://127.0.0.1:${port}`, { caFile: pki.caFile, connectTimeout: '300ms' }));
    try {
      const a = await send(t.proxyUrl, '/');
      expect(a.status).toBe(504);
      expect(JSON.parse(a.body)).toEqual({ error: 'upstream_timeout', message: 'connecting to the upstream timed out' });
      expect(t.events('proxy.upstream_failed')[0]).toMatchObject({ error: 'connect_timeout' });
    } finally {
      await t.stop();
      silent.close();
    }
  });

  it('refuses to start with a CA file that is missing or not a certificate, naming the file', async () => {
    const notPem = `${pki.dir}/not-a-cert.pem`;
    writeFileSync(notPem, 'this is not a certificate\n');
    for (const caFile of [`${pki.dir}/missing.pem`, notPem]) {
      const err = await startTokend(idp, proxyYaml(upstream.url, { caFile })).then(
        async (t) => {
          await t.stop();
          throw new Error('expected start-up to fail');
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(TokendError);
      expect((err as TokendError).code).toBe('CONFIG_INVALID');
      expect((err as TokendError).message).toContain('proxies (orders)');
    }
  });
});
