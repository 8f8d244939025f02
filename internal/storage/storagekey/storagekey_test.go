package storagekey_test

import (
	"testing"

	"github.com/spoolhq/spool/internal/storage/storagekey"
)

func TestCheck(t *testing.T) {
	for _, key := range []string{"usr_1/upl_2", "a", "a/b/c", "usr_1/upl_2.mp4", "a.b/c"} {
		if err := storagekey.Check(key); err != nil {
			t.Errorf("Check(%q) = %v, want nil", key, err)
		}
	}
	for _, key := range []string{"", ".", "/a", "a/../b", "..", "a/..", "a\\b", "a\x00b", "a//b", "a/./b", "a/", "./a"} {
		if err := storagekey.Check(key); err == nil {
			t.Errorf("Check(%q) = nil, want an error", key)
		}
	}
}
