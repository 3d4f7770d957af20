/// <reference types="vitest/config" />
import { defineConfig } from "vite";

// The API serves the built files at "/" (src/conveyor/api/dashboard.py); `npm run dev` proxies
// the API of a `conveyor up` on CONVEYOR_API (default port 8000) so the dev server can use it.
declare const process: { env: Record<string, string | undefined> };
const api = process.env.CONVEYOR_API ?? "http://127.0.0.1:8000";

export default defineConfig({
  // TSX is compiled by esbuild with React's automatic runtime (no React plugin: it keeps the
  // toolchain to vite alone, which installs on every npm this project meets).
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 400,
    rollupOptions: {
      onwarn(warning, warn) {
        // React Query marks its modules "use client" for server components; a SPA ignores it.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: {
    proxy: {
      "/api": { target: api, ws: true },
      "/healthz": api,
      "/readyz": api,
    },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
