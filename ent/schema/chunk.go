package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// UploadChunk is one chunk that reached spool, well or badly. There is at
// most one row per (session, index): receiving a chunk again updates it.
type UploadChunk struct{ ent.Schema }

func (UploadChunk) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

func (UploadChunk) Fields() []ent.Field {
	return []ent.Field{
		field.String("session_id").Immutable(),
		field.Int("index").NonNegative().Immutable(),
		field.Enum("state").Values("RECEIVED", "FAILED"),
		field.Int64("size").NonNegative().Comment("bytes received; the planned size when RECEIVED"),
		field.Int64("crc32c").Default(0).Comment("CRC32C (Castagnoli) of the received bytes"),
		field.String("digest").Optional().Nillable().Comment("client-declared digest verified at receipt, alg:hex"),
		field.String("error_code").Optional().Nillable(),
		field.String("error").Optional().Nillable(),
		field.Int("attempts").Default(1),
		field.Time("updated_at"),
	}
}

func (UploadChunk) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("session", UploadSession.Type).Ref("chunks").Field("session_id").Unique().Required().Immutable(),
	}
}

func (UploadChunk) Indexes() []ent.Index {
	return []ent.Index{index.Fields("session_id", "index").Unique()}
}
