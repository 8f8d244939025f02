//go:build !unix

package graph

// readable says the socket may be read: where it cannot be peeked at,
// the reader parks in gorilla's read instead.
func readable(uintptr) bool { return true }
