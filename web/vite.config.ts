// Builds the two pages spool serves (the uploader at / and GraphiQL at
// /graphiql) into dist/, which the Go binary embeds. Everything is
// bundled: the pages must work with no network but spool itself.
import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/",
  // Unit tests (vitest) sit beside the code; the tests that drive a real
  // spool are test/*.test.mjs, run by node --test.
  test: {
    include: ["src/**/*.test.ts"],
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // GraphiQL (with its editor) is large by nature; it is served
    // compressed and only on /graphiql.
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      // React libraries mark modules "use client"; that means nothing in
      // a plain bundle, and ~110 such warnings would bury real ones.
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
      input: {
        index: resolve(import.meta.dirname, "index.html"),
        graphiql: resolve(import.meta.dirname, "graphiql.html"),
      },
    },
  },
});
