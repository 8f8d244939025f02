// Package storagekey holds the rule every storage engine applies to the
// keys spool hands it ("user/upload"), so that the engines cannot drift
// apart on what a key may be.
package storagekey

import (
	"fmt"
	"path"
	"strings"
)

// Check refuses keys that could name something outside a store (a file
// above its directory) or alias another key ("a//b", "a/./b", "a/").
// Keys are built by spool, never taken from clients, so a refused key is
// a bug upstream.
func Check(key string) error {
	switch {
	case key == "", key == ".",
		strings.HasPrefix(key, "/"),
		strings.Contains(key, ".."),
		strings.ContainsAny(key, "\\\x00"),
		path.Clean(key) != key:
		return fmt.Errorf("invalid key %q", key)
	}
	return nil
}
