package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// UploadBatch is one initBatch call.
type UploadBatch struct{ ent.Schema }

func (UploadBatch) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

func (UploadBatch) Mixin() []ent.Mixin {
	return []ent.Mixin{prefixedID{prefix: "bat"}, timestamps{}}
}

func (UploadBatch) Fields() []ent.Field {
	return []ent.Field{
		field.String("owner_id").Immutable(),
		field.String("channel_id").Optional().Nillable(),
	}
}

func (UploadBatch) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("owner", User.Type).Ref("batches").Field("owner_id").Unique().Required().Immutable(),
		edge.To("uploads", UploadSession.Type),
	}
}
