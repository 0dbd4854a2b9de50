// Verifications per second of a JWT access token whose key is already cached, through tokend's
// Verifier (issuer selection, remote-JWKS key lookup, claim checks, reason mapping) against
// calling jose's jwtVerify directly with a local KeyObject and the same checks: the ratio is what
// tokend adds on top of the verification library. Runs against the BUILT code (dist/), so
// `npm run build` first.
//
//   node bench/verify.mjs                          # 7 rounds x 2000 verifications per scenario
//   BENCH_ROUNDS=3 BENCH_ITERATIONS=500 node bench/verify.mjs
//
// The JWKS is served by a local node:http server (fetched once, during warm-up). Within each
// round the two sides alternate in chunks of 100, so drift on a shared machine hits both alike;
// medians over the rounds are reported. Verifications run one at a time (await each), like requests on one connection.
import { createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SignJWT, exportJWK, generateKeyPair, jwtVerify } from 'jose';
import { pino } from 'pino';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', 'dist');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 2000);
const WARMUP = 300;
const AUDIENCE = 'https://orders.internal';

if (!existsSync(path.join(dist, 'verify', 'verifier.js'))) {
  console.error('bench/verify.mjs: dist/verify/verifier.js is missing; run `npm run build` first');
  process.exit(1);
}
const { createVerifier } = await import(pathToFileURL(path.join(dist, 'verify', 'verifier.js')).href);
const { systemClock } = await import(pathToFileURL(path.join(dist, 'clock.js')).href);

/** Discovery + JWKS on 127.0.0.1, counting JWKS fetches. */
async function startIdp(jwks) {
  const server = http.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const counts = { jwks: 0 };
  server.on('request', (req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      return res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks`, token_endpoint: `${issuer}/token` }));
    }
    if (req.url === '/jwks') {
      counts.jwks++;
      return res.end(JSON.stringify(jwks));
    }
    res.statusCode = 404;
    res.end('{}');
  });
  return { issuer, counts, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** Nanoseconds taken by `iterations` sequential awaited calls of fn. */
async function timeNs(fn, iterations) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await fn();
  return Number(process.hrtime.bigint() - start);
}

const CHUNK = 100;

/**
 * One round: both sides run `iterations` calls, interleaved in chunks of CHUNK (alternating which
 * goes first), so a burst of load from elsewhere on the machine hits both alike. Returns ops/s.
 */
async function round(a, b, iterations) {
  let nsA = 0;
  let nsB = 0;
  for (let done = 0, k = 0; done < iterations; done += CHUNK, k++) {
    const n = Math.min(CHUNK, iterations - done);
    if (k % 2 === 0) {
      nsA += await timeNs(a, n);
      nsB += await timeNs(b, n);
    } else {
      nsB += await timeNs(b, n);
      nsA += await timeNs(a, n);
    }
  }
  return [iterations / (nsA / 1e9), iterations / (nsB / 1e9)];
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function scenario(alg) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: `${alg.toLowerCase()}-1`, alg, use: 'sig' };
  // A second published key, as IdPs publish during rotation: the lookup has to pick by kid.
  const other = await generateKeyPair(alg, { extractable: true });
  const otherJwk = { ...(await exportJWK(other.publicKey)), kid: `${alg.toLowerCase()}-0`, alg, use: 'sig' };
  const idp = await startIdp({ keys: [otherJwk, jwk] });
  try {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      iss: idp.issuer,
      sub: 'orders-client',
      aud: AUDIENCE,
      scope: 'orders:read orders:write',
      client_id: 'orders-client',
      jti: 'bench-0001',
      iat: now,
      exp: now + 3600,
    })
      .setProtectedHeader({ alg, kid: jwk.kid, typ: 'at+jwt' })
      .sign(privateKey);

    const verifier = createVerifier(
      {
        issuers: [
          { issuer: idp.issuer, audience: [AUDIENCE], clockToleranceSec: 30, requiredClaims: ['sub'], allowInsecureHttp: true },
        ],
      },
      { clock: systemClock, logger: pino({ level: 'silent' }) },
    );
    const signal = new AbortController().signal; // the HTTP layer always passes one
    const keyObject = createPublicKey({ key: jwk, format: 'jwk' });
    const options = { issuer: idp.issuer, audience: [AUDIENCE], algorithms: [alg], clockTolerance: 30, requiredClaims: ['sub'] };

    const ours = async () => {
      const o = await verifier.verify(token, signal);
      if (!o.active) throw new Error(`bench token refused: ${o.reason}`);
    };
    const baseline = async () => {
      await jwtVerify(token, keyObject, options);
    };

    await round(ours, baseline, WARMUP);
    const rounds = { ours: [], baseline: [] };
    for (let r = 0; r < ROUNDS; r++) {
      const [o, b] = await round(ours, baseline, ITERATIONS);
      rounds.ours.push(o);
      rounds.baseline.push(b);
    }
    await verifier.close();
    const o = median(rounds.ours);
    const b = median(rounds.baseline);
    return { alg, ours: o, baseline: b, ratio: o / b, jwksFetches: idp.counts.jwks, rounds };
  } finally {
    await idp.close();
  }
}

console.log(`verify: ${ROUNDS} rounds x ${ITERATIONS} sequential verifications per side, node ${process.version}`);
console.log('alg     tokend Verifier (ops/s)   jose jwtVerify + KeyObject (ops/s)   ratio   JWKS fetches');
const results = [];
for (const alg of ['RS256', 'ES256']) {
  const r = await scenario(alg);
  results.push(r);
  console.log(
    `${r.alg.padEnd(7)} ${r.ours.toFixed(0).padStart(22)}   ${r.baseline.toFixed(0).padStart(34)}   ${r.ratio.toFixed(2).padStart(5)}   ${String(r.jwksFetches).padStart(12)}`,
  );
  if (r.jwksFetches !== 1) {
    console.error(`bench/verify.mjs: expected exactly 1 JWKS fetch for ${r.alg}, saw ${r.jwksFetches}`);
    process.exitCode = 1;
  }
}
console.log(
  JSON.stringify({
    bench: 'verify',
    results: results.map(({ alg, ours, baseline, ratio, jwksFetches }) => ({
      alg,
      verifier_ops_per_s: Math.round(ours),
      jose_ops_per_s: Math.round(baseline),
      ratio: Number(ratio.toFixed(3)),
      jwks_fetches: jwksFetches,
    })),
  }),
);
