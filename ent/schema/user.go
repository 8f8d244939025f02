package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// User is the subject of a bearer token. Its reserved_bytes is the quota
// ledger: bytes of unfinished sessions plus kept media, moved only by
// conditional updates so concurrent inits can never overshoot the quota.
type User struct{ ent.Schema }

func (User) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

func (User) Mixin() []ent.Mixin {
	return []ent.Mixin{prefixedID{prefix: "usr"}, timestamps{}}
}

func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("subject").Unique().NotEmpty().Immutable(),
		field.Int64("quota_bytes").NonNegative(),
		field.Int64("reserved_bytes").Default(0),
	}
}

func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("batches", UploadBatch.Type),
		edge.To("uploads", UploadSession.Type),
		edge.To("media", MediaFile.Type),
	}
}
