import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration files start their own IdP/Redis on OS-chosen ports, so files can run in parallel.
    fileParallelism: true,
    reporters: ['default'],
  },
});
