import { readdirSync, readFileSync } from 'node:fs';
import type { HeapSpaceInfo } from 'node:v8';

/**
 * Process metrics under prom-client's default names, all read at scrape time: nothing runs between
 * scrapes (prom-client's own defaults keep a 10 ms event-loop-delay timer and a GC observer
 * running, tokend's main idle CPU cost). Linux-only readings (/proc) are left out elsewhere.
 */

// node:v8 is taken at the first scrape: a daemon nobody scrapes need not load it.
const v8 = (): typeof import('node:v8') => process.getBuiltinModule('node:v8');

/** Start of the process, Unix seconds. */
const START_TIME_S = Math.round(Date.now() / 1000 - process.uptime());
const VERSION = process.versions.node.split('.');

/** `# HELP` and `# TYPE` lines, then one sample. */
function metric(name: string, type: 'gauge' | 'counter', help: string, value: number): string {
  return `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
}

/** Labelled gauge samples under one HELP/TYPE header. */
function labelled(name: string, help: string, samples: ReadonlyArray<readonly [string, number]>): string {
  let out = `# HELP ${name} ${help}\n# TYPE ${name} gauge\n`;
  for (const [labels, value] of samples) out += `${name}{${labels}} ${value}\n`;
  return out;
}

/** Kilobyte fields of /proc/self/status, in bytes; empty where there is no /proc. */
function procStatus(): Map<string, number> {
  const out = new Map<string, number>();
  let text: string;
  try {
    text = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return out;
  }
  for (const m of text.matchAll(/^(Vm\w+):\s+(\d+) kB$/gm)) out.set(m[1] as string, Number(m[2]) * 1024);
  return out;
}

function openFds(): number | undefined {
  try {
    // The directory handle readdir itself holds is one of them.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return undefined;
  }
}

function maxFds(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Event-loop lag as seen now: how long a setImmediate takes to run, in seconds. */
function eventLoopLag(): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => setImmediate(() => resolve(Number(process.hrtime.bigint() - start) / 1e9)));
}

function memoryMetrics(): string {
  const status = procStatus();
  const mem = process.memoryUsage();
  let out = metric('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', mem.rss);
  const vm = status.get('VmSize');
  if (vm !== undefined) out += metric('process_virtual_memory_bytes', 'gauge', 'Virtual memory size in bytes.', vm);
  const heap = status.get('VmData');
  if (heap !== undefined) out += metric('process_heap_bytes', 'gauge', 'Process heap size in bytes.', heap);
  out += metric('nodejs_heap_size_total_bytes', 'gauge', 'Process heap size from Node.js in bytes.', mem.heapTotal);
  out += metric('nodejs_heap_size_used_bytes', 'gauge', 'Process heap size used from Node.js in bytes.', mem.heapUsed);
  out += metric('nodejs_external_memory_bytes', 'gauge', 'Node.js external memory size in bytes.', mem.external);
  const spaces = v8().getHeapSpaceStatistics();
  const space = (pick: (s: HeapSpaceInfo) => number) =>
    spaces.map((s) => [`space="${s.space_name.replace(/_space$/, '')}"`, pick(s)] as const);
  out += labelled('nodejs_heap_space_size_total_bytes', 'Process heap space size total from Node.js in bytes.', space((s) => s.space_size));
  out += labelled('nodejs_heap_space_size_used_bytes', 'Process heap space size used from Node.js in bytes.', space((s) => s.space_used_size));
  out += labelled(
    'nodejs_heap_space_size_available_bytes',
    'Process heap space size available from Node.js in bytes.',
    space((s) => s.space_available_size),
  );
  return out;
}

/** The process metrics in Prometheus text format, read now. */
export async function renderProcessMetrics(): Promise<string> {
  const cpu = process.cpuUsage();
  let out = metric('process_cpu_user_seconds_total', 'counter', 'Total user CPU time spent in seconds.', cpu.user / 1e6);
  out += metric('process_cpu_system_seconds_total', 'counter', 'Total system CPU time spent in seconds.', cpu.system / 1e6);
  out += metric('process_cpu_seconds_total', 'counter', 'Total user and system CPU time spent in seconds.', (cpu.user + cpu.system) / 1e6);
  out += metric('process_start_time_seconds', 'gauge', 'Start time of the process since unix epoch in seconds.', START_TIME_S);
  out += memoryMetrics();
  const fds = openFds();
  if (fds !== undefined) out += metric('process_open_fds', 'gauge', 'Number of open file descriptors.', fds);
  const max = maxFds();
  if (max !== undefined) out += metric('process_max_fds', 'gauge', 'Maximum number of open file descriptors.', max);
  const resources = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) resources.set(type, (resources.get(type) ?? 0) + 1);
  out += labelled(
    'nodejs_active_resources',
    'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
    [...resources].map(([type, n]) => [`type="${type}"`, n] as const),
  );
  out += metric('nodejs_active_resources_total', 'gauge', 'Total number of active resources.', [...resources.values()].reduce((a, b) => a + b, 0));
  out += labelled('nodejs_version_info', 'Node.js version info.', [
    [`version="${process.version}",major="${VERSION[0]}",minor="${VERSION[1]}",patch="${VERSION[2]}"`, 1],
  ]);
  out += metric('nodejs_eventloop_lag_seconds', 'gauge', 'Lag of event loop in seconds.', await eventLoopLag());
  return out;
}
