/**
 * prom-client's Registry, Counter, Gauge and Histogram, taken from their own files. Its index also
 * loads the Pushgateway (node:https, and with it node:tls and OpenSSL's TLS code), the cluster
 * aggregator and the default metrics (node:perf_hooks, node:v8), none of which tokend uses:
 * ~7 MiB of RSS on Node 24 for an http:// configuration (docs/performance.md). The classes are
 * the very ones the index exports; only the module path differs.
 */
import type * as prom from 'prom-client';
import counter from 'prom-client/lib/counter.js';
import gauge from 'prom-client/lib/gauge.js';
import histogram from 'prom-client/lib/histogram.js';
import registry from 'prom-client/lib/registry.js';

export const Registry: typeof prom.Registry = registry;
export type Registry = prom.Registry;
export const Counter: typeof prom.Counter = counter;
export type Counter<T extends string = string> = prom.Counter<T>;
export const Gauge: typeof prom.Gauge = gauge;
export type Gauge<T extends string = string> = prom.Gauge<T>;
export const Histogram: typeof prom.Histogram = histogram;
export type Histogram<T extends string = string> = prom.Histogram<T>;
