import { Writable } from 'node:stream';
import { loadConfigFile } from '../../src/config/load.js';
import { createLogger } from '../../src/log.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.js';
import { LogLines, type LogLine } from './log-lines.js';

/**
 * tokend started in this process (startDaemon) from a config file, with an injected clock and
 * randomness, its log lines parsed as they are written (pino `sink()` style). For daemon
 * behaviour that would otherwise wait on real token lifetimes; the process boundary (signals,
 * exit codes) stays with the CLI tests.
 */
export class InProcessTokend extends LogLines {
  daemon!: Daemon;

  private constructor() {
    super(10_000);
  }

  static async start(configPath: string, opts: Omit<DaemonOptions, 'logger' | 'logDestination'> = {}): Promise<InProcessTokend> {
    const t = new InProcessTokend();
    const config = await loadConfigFile(configPath, { env: process.env });
    const sink = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        for (const text of chunk.toString().split('\n')) if (text) t.push(JSON.parse(text) as LogLine);
        cb();
      },
    });
    t.daemon = await startDaemon(config, { ...opts, logger: createLogger('debug', sink as never) });
    return t;
  }

  get url(): string {
    return this.daemon.url;
  }

  stop(): Promise<void> {
    return this.daemon.stop();
  }
}
