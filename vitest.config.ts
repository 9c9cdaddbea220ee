import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One kube-apiserver + etcd for the whole run, started on first use (test/harness/kube/shared.ts).
    globalSetup: ['test/harness/kube/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 300_000,
    // Integration tests start real servers and child processes; two workers fit two cores.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
