package graph

import "github.com/spoolhq/spool/internal/upload"

// maxPageSize bounds one page of a connection, so one query cannot read a
// user's whole library.
const maxPageSize = 100

func checkPageSize(first, last *int) error {
	for _, n := range []*int{first, last} {
		if n != nil && (*n < 0 || *n > maxPageSize) {
			return upload.Errorf(upload.CodeBadUserInput, "page size must be between 0 and %d, got %d", maxPageSize, *n)
		}
	}
	return nil
}
