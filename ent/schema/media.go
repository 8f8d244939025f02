package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/spoolhq/spool/internal/media"
)

// MediaFile is the product of a completed upload. It is the one ent type
// exposed to GraphQL through entgql: Relay node, connection, where input and
// order come from its annotations.
type MediaFile struct{ ent.Schema }

func (MediaFile) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Type("MediaFile"),
	}
}

func (MediaFile) Mixin() []ent.Mixin {
	return []ent.Mixin{prefixedID{prefix: "med"}}
}

func (MediaFile) Fields() []ent.Field {
	return []ent.Field{
		field.String("owner_id").Immutable().Annotations(entgql.Skip()),
		field.String("upload_id").Optional().Nillable().Immutable().Annotations(entgql.Skip()),
		field.String("file_name").NotEmpty(),
		field.String("mime_type").NotEmpty(),
		field.Enum("media_type").Values("IMAGE", "VIDEO", "AUDIO").
			Annotations(entgql.Type("MediaType")),
		field.Int64("file_size").NonNegative().
			Annotations(entgql.Type("Int64")),
		field.String("storage_key").NotEmpty().Annotations(entgql.Skip()),
		field.String("bucket").Optional().Annotations(entgql.Skip()),
		field.String("public_url").Optional().Nillable().Annotations(entgql.Skip()),
		field.String("thumbnail_url").Optional().Nillable().Annotations(entgql.Skip()),
		field.Int("width").Optional().Nillable().Annotations(entgql.Skip()),
		field.Int("height").Optional().Nillable().Annotations(entgql.Skip()),
		field.Int("duration_seconds").Optional().Nillable().Annotations(entgql.Skip()).
			Comment("what the client declared at initBatch"),
		field.Float("duration").Optional().Nillable().Annotations(entgql.Skip()).
			Comment("seconds, as probed; the API's durationSeconds falls back to the declared one"),
		field.JSON("thumbnails", []media.Thumbnail{}).Optional().Annotations(entgql.Skip()).
			Comment("stored derivatives, smallest first"),
		field.String("placeholder").Optional().Nillable().Annotations(entgql.Skip()).
			Comment("ThumbHash of the image or poster, base64"),
		field.JSON("video", &media.VideoInfo{}).Optional().Annotations(entgql.Skip()),
		field.JSON("audio", &media.AudioInfo{}).Optional().Annotations(entgql.Skip()),
		field.Enum("status").Values("PENDING", "PROCESSING", "READY", "FAILED").Default("PENDING").
			Annotations(entgql.Type("MediaStatus")),
		field.String("processing_error").Optional().Nillable().Annotations(entgql.Skip()),
		// Filterable, so a client can ask whether the caller already has
		// a file's bytes (userMedia(where: {contentHash: …})) before it
		// sends them; the content-led index below serves that read.
		field.String("content_hash").Optional().Nillable().
			Comment("The file's SHA-256 in lowercase hex: while it is PROCESSING, the one its upload declared (if any); once processed, what processing read, or none if it gave up before reading the file (a copy made by dedup has its original's)."),
		field.JSON("metadata", map[string]any{}).Optional().Annotations(entgql.Skip()),
		field.Time("created_at").Immutable().
			Annotations(entgql.OrderField("CREATED_AT"), entgql.Skip(entgql.SkipWhereInput)),
		field.Time("processed_at").Optional().Nillable().Annotations(entgql.Skip()),
		field.Time("deleted_at").Optional().Nillable().Annotations(entgql.Skip()),
		field.Time("purged_at").Optional().Nillable().Annotations(entgql.Skip()).
			Comment("when a deleted file's bytes were removed from storage"),
	}
}

func (MediaFile) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("owner", User.Type).Ref("media").Field("owner_id").Unique().Required().Immutable().
			Annotations(entgql.Skip()),
		edge.From("upload", UploadSession.Type).Ref("media").Field("upload_id").Unique().Immutable().
			Annotations(entgql.Skip()),
	}
}

func (MediaFile) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("owner_id", "created_at"),
		index.Fields("owner_id", "media_type", "created_at"),
		// Only the lookups of a READY copy to share (initBatch of a file
		// that names its sha256; processing's dedup) read this, one probe
		// per content for the user's earliest live copy: the content
		// leads, so that a probe never walks a user's library, and the
		// status and deletion come before the order, so that it steps over
		// none of the other users' copies of a popular file, nor the
		// user's own deleted or failed ones (docs/DESIGN.md, "Sweeper and
		// quota").
		index.Fields("content_hash", "owner_id", "status", "deleted_at", "created_at", "id"),
		index.Fields("status", "created_at"),
		// The files that reference a stored object, read when one of them
		// is deleted (is the object still charged?) and when its purge
		// runs (is it still referenced?): without it both walked all of
		// the user's media by owner.
		index.Fields("storage_key", "owner_id", "deleted_at"),
		// The deleted files whose bytes are not purged yet, which every
		// sweep looks for (a minute apart by default): without it each
		// sweep read the whole table to find none. It holds only those
		// rows, and only a query that names both conditions can use it.
		// The condition is written as PostgreSQL prints it back, each term
		// in parentheses: the migrations' drift check compares the text.
		index.Fields("deleted_at").StorageKey("mediafile_deleted_unpurged").
			Annotations(entsql.IndexWhere("(deleted_at IS NOT NULL) AND (purged_at IS NULL)")),
	}
}
