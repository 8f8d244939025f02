// Package ent is spool's generated data access layer. Only ent/schema is
// written by hand; `make generate` rebuilds the rest.
package ent
