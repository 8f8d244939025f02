package tmpfs

import (
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/required"
)

// Mount mounts a tmpfs of size bytes on a new directory for the test and
// returns the directory; it is unmounted when the test ends. Mounting
// needs root: without it the test is skipped, or fails where CI=true.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		required.Missing(t, "mounting a tmpfs of %d bytes to fill: %v (this test needs root)", size, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting the tmpfs: %v", err)
		}
	})
	return dir
}

// Free returns the bytes free on dir's filesystem, as statfs counts them
// for an unprivileged writer (what spool's store reads too).
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
