// Builds the two pages spool serves (the uploader at / and GraphiQL at
// /graphiql) into dist/, which the Go binary embeds. Everything is
// bundled: the pages must work with no network but spool itself.
import { resolve } from "node:path";
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // GraphiQL (with its editor) is large by nature; it is served
    // compressed and only on /graphiql.
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, "index.html"),
        graphiql: resolve(import.meta.dirname, "graphiql.html"),
      },
    },
  },
});
