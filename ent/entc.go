//go:build ignore

// entc.go generates ent's code and the GraphQL schema of the ent-backed
// types (graph/ent.graphqls). Run it from the module root: `make generate`.
package main

import (
	"log"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
)

func main() {
	ext, err := entgql.NewExtension(
		entgql.WithSchemaGenerator(),
		entgql.WithWhereInputs(true),
		entgql.WithConfigPath("gqlgen.yml"),
		entgql.WithSchemaPath("graph/ent.graphqls"),
	)
	if err != nil {
		log.Fatalf("creating entgql extension: %v", err)
	}
	cfg := &gen.Config{
		Features: []gen.Feature{gen.FeatureUpsert, gen.FeatureLock, gen.FeatureExecQuery, gen.FeatureVersionedMigration},
	}
	if err := entc.Generate("./ent/schema", cfg, entc.Extensions(ext)); err != nil {
		log.Fatalf("running ent codegen: %v", err)
	}
}
