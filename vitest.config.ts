import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // tokend's Headers and Response, as the CLI installs them (src/util/fetch-classes.ts).
    setupFiles: ['test/support/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration files start their own IdP/Redis on OS-chosen ports, so files can run in parallel.
    fileParallelism: true,
    // Vitest's default is one worker fewer than the CPUs: a single worker on a 2-core machine, which
    // runs the files one after another. The integration files mostly wait on token lifetimes and
    // real servers, not the CPU: on the 2-core machine 5 workers run the suite in 85-92 s against
    // 111 s with 3 (three runs each, all green). Override with --maxWorkers or VITEST_MAX_WORKERS.
    maxWorkers: 5,
    reporters: ['default'],
  },
});
