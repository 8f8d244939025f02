// Package tmpfs gives tests a small filesystem of their own to fill, so
// that what spool does on a full disk is tested on a real one.
package tmpfs
