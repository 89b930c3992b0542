/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The gateway serves dist/ at / under a strict CSP (default-src 'self', no inline
// script), so the build emits only external module scripts and stylesheet files.
// `npm run dev` proxies the API to a local `make run` (gateway on :8000).
const gateway = process.env.FM_GATEWAY_URL ?? "http://localhost:8000";

export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: true,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "/api": gateway,
      "/v1": gateway,
      "/health": gateway,
    },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
