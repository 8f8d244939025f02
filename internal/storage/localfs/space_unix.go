//go:build unix

package localfs

import "golang.org/x/sys/unix"

// Space returns the bytes free for spool (what an unprivileged writer may
// still use) and the size of the filesystem that holds the store. A full
// disk fails every chunk with "storage is full" and stays full until
// uploads are cancelled or expire, so it is worth watching
// (spool_storage_free_bytes). A chunk that fails there gives back the
// blocks it took (copyChunk), so the disk is full of chunks, not of
// failed writes. Chunks stop short of a full disk, at the reserve
// (Reserve, --disk-reserve): the database and processing still have room.
func (s *Store) Space() (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.objectsDir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), nil
}
