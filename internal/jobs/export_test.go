package jobs

import "time"

// WithListenerFallback returns c with SQLite's listener reading the
// notification table only every d when nothing wakes it.
func WithListenerFallback(c Config, d time.Duration) Config {
	c.listenerFallback = d
	return c
}
