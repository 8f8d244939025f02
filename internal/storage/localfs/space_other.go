//go:build !unix

package localfs

import "errors"

// Space is not known where there is no statfs.
func (s *Store) Space() (free, size int64, err error) {
	return 0, 0, errors.New("localfs: free space is not known on this system")
}
