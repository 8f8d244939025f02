// Package graph is spool's GraphQL API: thin resolvers that read the
// caller from the context, call internal/upload and map its answers.
package graph

import (
	"github.com/spoolhq/spool/internal/upload"
)

//go:generate go tool gqlgen generate

// Resolver is the root resolver; it holds only the upload service.
type Resolver struct {
	Uploads *upload.Service
}
