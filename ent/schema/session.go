package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// UploadSession is one file's upload. Its progress is derived from its
// chunk rows; version is bumped in every transaction that changes what a
// subscriber would see, so stale events can be told from fresh ones.
type UploadSession struct{ ent.Schema }

func (UploadSession) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

func (UploadSession) Mixin() []ent.Mixin {
	return []ent.Mixin{prefixedID{prefix: "upl"}, timestamps{}}
}

func (UploadSession) Fields() []ent.Field {
	return []ent.Field{
		field.String("owner_id").Immutable(),
		field.String("batch_id"),
		field.String("file_name").NotEmpty(),
		field.String("original_name"),
		field.String("mime_type").NotEmpty().Immutable(),
		field.Enum("media_type").Values("IMAGE", "VIDEO", "AUDIO").Immutable(),
		field.Int64("total_size").Positive().Immutable(),
		field.String("sha256").Optional().Nillable().Immutable(),
		field.String("fingerprint").Optional().Nillable().Immutable(),
		field.Int("duration_seconds").Optional().Nillable().Immutable(),
		field.Enum("strategy").Values("SINGLE", "CHUNKED").Immutable(),
		field.Int64("chunk_size").Positive().Immutable(),
		field.Int("total_chunks").Positive().Immutable(),
		field.Enum("status").
			Values("INITIALIZED", "UPLOADING", "ASSEMBLING", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED").
			Default("INITIALIZED"),
		field.String("storage_key").NotEmpty().Immutable(),
		field.Time("expires_at"),
		field.String("error").Optional().Nillable(),
		field.Int("percent").Default(0).Comment("high-water mark, so percent never goes backwards"),
		field.Int64("version").Default(1),
		// The counts below move in the transaction that moves a chunk row
		// between states, by that row's old and new state, so they always
		// equal a count of the rows (docs/DESIGN.md, invariant 1) without
		// a chunk receipt reading every row.
		field.Int("received_chunks").Default(0).NonNegative().Comment("chunk rows RECEIVED"),
		field.Int64("received_bytes").Default(0).NonNegative().Comment("bytes of the chunk rows RECEIVED"),
		field.Int("failed_chunks").Default(0).NonNegative().Comment("chunk rows FAILED"),
		field.Bool("bytes_freed").Default(false).Comment("storage released after cancel or expiry"),
		field.Time("finished_at").Optional().Nillable(),
		// A bearer capability: whoever holds it can write the upload's
		// object for a week. Sensitive keeps it out of String() and JSON;
		// only the upload's owner gets it, as its ChunkURL.
		field.String("resumable_url").Optional().Nillable().Sensitive().
			Comment("the store's resumable session for a direct SINGLE upload"),
		field.Bool("deduplicated").Default(false).Immutable().
			Comment("completed at initBatch: the user already had a READY file with these bytes"),
		field.String("resumable_origin").Optional().Nillable().
			Comment("the browser origin the resumable session answers CORS for; empty for none"),
		// tus uploads (POST /files/, docs/DESIGN.md §tus): their bytes
		// arrive by offset, each PATCH appending where the last one ended,
		// so a PATCH may end inside a chunk. The bytes it kept there are
		// the tail: stored, counted in the offset, not yet a chunk.
		field.Bool("tus").Default(false).Immutable().
			Comment("created by a tus client: bytes arrive only as appends at the upload's offset"),
		field.Bool("tus_part").Default(false).Immutable().
			Comment("a tus partial upload (Upload-Concat: partial): bytes to be joined into another upload, never media of its own"),
		field.Int64("tail_bytes").Default(0).NonNegative().
			Comment("tus: bytes stored of the first chunk not yet received"),
		field.Int64("tail_crc32c").Default(0).
			Comment("tus: CRC32C (Castagnoli) of the tail's bytes"),
	}
}

func (UploadSession) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("owner", User.Type).Ref("uploads").Field("owner_id").Unique().Required().Immutable(),
		edge.From("batch", UploadBatch.Type).Ref("uploads").Field("batch_id").Unique().Required(),
		edge.To("chunks", UploadChunk.Type),
		edge.To("media", MediaFile.Type).Unique(),
	}
}

func (UploadSession) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("owner_id", "status"),
		// Only the lookup of an unfinished upload to resume (initBatch of
		// a file that names its fingerprint or sha256) reads these, one
		// probe per value, and only their entries with finished_at NULL
		// (set with every final status): a user's finished, cancelled and
		// expired uploads of a file, however many, are never read again
		// (docs/DESIGN.md §Sweeper and quota). The value leads, so that
		// neither index fits the other's probe: led by owner_id, either
		// served both by owner alone, and PostgreSQL, which could not tell
		// them apart before it had statistics, walked a user's uploads
		// through the wrong one. A first chunk's move to UPLOADING leaves
		// them alone, where the status in them would rewrite their entries.
		index.Fields("fingerprint", "owner_id", "finished_at"),
		index.Fields("sha256", "owner_id", "finished_at"),
		index.Fields("status", "expires_at"),
		index.Fields("bytes_freed", "status"),
		// A batch's uploads (the batch query, batchProgress's snapshot):
		// without it they were found by walking all of the user's uploads
		// by (owner_id, status).
		index.Fields("batch_id"),
	}
}
