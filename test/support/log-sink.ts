import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

/** Collects the NDJSON the real logger writes (pino test/helper.js `sink()`), bound to `{ token }`. */
export function logSink(token = 'orders'): {
  logger: Logger;
  raw: string[];
  lines: Array<Record<string, unknown>>;
  events(name: string): Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) {
        if (line) {
          raw.push(line);
          lines.push(JSON.parse(line) as Record<string, unknown>);
        }
      }
      cb();
    },
  });
  const logger = createLogger('debug', stream as never).child({ token });
  return { logger, raw, lines, events: (name) => lines.filter((l) => l.event === name) };
}
