import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration files start their own IdP/Redis on OS-chosen ports, so files can run in parallel.
    fileParallelism: true,
    // Vitest's default is one worker fewer than the CPUs: a single worker on a 2-core machine, which
    // runs the files one after another. The integration files mostly wait on token lifetimes, not
    // the CPU, so 3 workers cut the suite from ~130 s to ~50 s there (the longest file sets the
    // floor); more workers gained nothing. Override with --maxWorkers or VITEST_MAX_WORKERS.
    maxWorkers: 3,
    reporters: ['default'],
  },
});
