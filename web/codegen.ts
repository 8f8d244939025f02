// graphql-codegen's configuration: the types of the uploader's GraphQL
// documents (src/uploader/operations.ts) come from spool's schema, the
// one gqlgen serves (gqlgen.yml lists the same two files). `npm run
// codegen` writes src/uploader/gql/; `npm run build` fails when what is
// committed there differs from what codegen would write.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: ["../schema.graphqls", "../graph/ent.graphqls"],
  documents: ["src/uploader/**/*.ts", "!src/uploader/gql/**", "!src/**/*.test.ts"],
  ignoreNoDocuments: false,
  generates: {
    "src/uploader/gql/": {
      preset: "client",
      // Fragments only share field lists here; the page reads every
      // field of an answer directly.
      presetConfig: { fragmentMasking: false },
      config: {
        // As gqlgen encodes them: Int64 is a JSON number, Time an
        // RFC 3339 string, Cursor an opaque string.
        scalars: { ID: "string", Int64: "number", Time: "string", Cursor: "string", Upload: "File" },
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
        skipTypename: true,
      },
    },
  },
};

export default config;
