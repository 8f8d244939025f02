package client

import "time"

// FindInLibrary is findInLibrary, for tests of how it asks.
var FindInLibrary = (*Client).findInLibrary

// QuickRetries makes o wait wait between tries instead of backing off
// exponentially, so a test can exhaust them.
func QuickRetries(o UploadOptions, wait time.Duration) UploadOptions {
	o.retryWait = wait
	return o
}
