// Package schema holds spool's ent schema: users, upload batches, upload
// sessions, their chunks and the media files they produce.
package schema

import (
	"time"

	"entgo.io/ent"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
	"github.com/oklog/ulid/v2"
)

// prefixedID gives a type opaque, unguessable, globally unique string ids
// such as "upl_01J…": the prefix tells Relay's node(id) which type an id is,
// and ULIDs sort by creation time, which keeps cursors stable.
type prefixedID struct {
	mixin.Schema
	prefix string
}

// NewID returns a fresh id with the given prefix ("upl", "med", …).
func NewID(prefix string) string { return prefix + "_" + ulid.Make().String() }

func (m prefixedID) Fields() []ent.Field {
	prefix := m.prefix
	return []ent.Field{
		field.String("id").
			DefaultFunc(func() string { return NewID(prefix) }).
			Immutable().
			NotEmpty(),
	}
}

// timestamps records when a row was created and last changed.
type timestamps struct{ mixin.Schema }

func (timestamps) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}
