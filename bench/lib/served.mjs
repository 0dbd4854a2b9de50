// A bench server run as a child of the bench script itself (`node script --serve kind arg`), so
// the load generator and the server never share an event loop. The child prints {"port"} on
// stdout, then answers each line on stdin with its CPU time so far; stdin closing ends it. Both
// sides of that protocol live here, for the http, metrics and proxy benches.
import { spawn } from 'node:child_process';

/**
 * Starts `node script --serve kind arg` and resolves once it listens, with cpuMicros() (the
 * child's CPU time, user + system, so far, in µs) and stop() (ends it; resolves on its exit).
 * BENCH_FLAGS (space-separated node flags, e.g. the image's) go to every such child alike.
 */
export function startServed(script, kind, arg) {
  const flags = (process.env.BENCH_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...flags, script, '--serve', kind, arg], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const waiting = [];
    let port;
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${kind} server exited early (code ${code})`)));
    child.stdout.on('data', (c) => {
      out += c;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const msg = JSON.parse(out.slice(0, nl));
        out = out.slice(nl + 1);
        if (port !== undefined) {
          waiting.shift()?.(msg.user + msg.system);
          continue;
        }
        port = msg.port;
        const cpuMicros = () =>
          new Promise((r) => {
            waiting.push(r);
            child.stdin.write('cpu\n');
          });
        const stop = () => {
          child.removeAllListeners('exit');
          const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', r));
          child.stdin.end();
          return exited;
        };
        resolve({ kind, child, port, cpuMicros, stop });
      }
    });
  });
}

/** The child's side, once its server listens on port: announce it, answer CPU queries until stdin closes. */
export function serveCpuQueries(port) {
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    for (let i = 0; i < chunk.split('\n').length - 1; i++) process.stdout.write(`${JSON.stringify(process.cpuUsage())}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}
