package upload

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// A storage failure is one coded error: clients get STORAGE_UNAVAILABLE
// and a message without the engine's words; the log gets the cause.
func TestStorageErrorKeepsItsCause(t *testing.T) {
	t.Parallel()
	cause := fmt.Errorf("bucket spool-test: %w", fs.ErrPermission)
	err := fmt.Errorf("completing: %w", storageError("assembling upload", cause))

	if got := ErrorCode(err); got != CodeStorageUnavailable {
		t.Errorf("ErrorCode = %s, want STORAGE_UNAVAILABLE", got)
	}
	if msg := ErrorMessage(err); strings.Contains(msg, "bucket") || strings.Contains(msg, "permission") {
		t.Errorf("ErrorMessage = %q, shows the cause to clients", msg)
	}
	if !errors.Is(err, fs.ErrPermission) {
		t.Error("errors.Is does not reach the cause")
	}
	if text := err.Error(); !strings.Contains(text, "assembling upload") || !strings.Contains(text, "bucket spool-test") {
		t.Errorf("Error() = %q, want what was done and the cause, for the log", text)
	}
}

// A full disk is said to be full, whatever the operation: a client told
// only to retry shortly cannot tell its user why nothing moves.
func TestStorageErrorOfAFullDisk(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		cause := &fs.PathError{Op: "write", Path: "/data/files/staging/x", Err: errno}
		err := fmt.Errorf("receiving: %w", storageError("writing chunk", cause))
		if got := ErrorCode(err); got != CodeStorageUnavailable {
			t.Errorf("%v: ErrorCode = %s, want STORAGE_UNAVAILABLE", errno, got)
		}
		if msg := ErrorMessage(err); !strings.Contains(msg, "storage is full") || strings.Contains(msg, "/data") {
			t.Errorf("%v: ErrorMessage = %q, want it to say storage is full, without the path", errno, msg)
		}
		if got := RetryAfterSeconds(err); got != 30 {
			t.Errorf("%v: retry after %d s, want 30: the disk stays full until space is freed", errno, got)
		}
	}
	other := storageError("writing chunk", fs.ErrPermission)
	if msg := ErrorMessage(other); strings.Contains(msg, "full") {
		t.Errorf("another storage failure: ErrorMessage = %q, want no word of a full disk", msg)
	}
	if got := RetryAfter(other); got != 0 {
		t.Errorf("another storage failure: retry after %v, want no wait asked", got)
	}
}

func TestErrorWithoutCause(t *testing.T) {
	t.Parallel()
	err := Errorf(CodeNotFound, "upload %q not found", "x")
	if got, want := err.Error(), `NOT_FOUND: upload "x" not found`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if err.Unwrap() != nil {
		t.Errorf("Unwrap() = %v, want nil", err.Unwrap())
	}
	if got := ErrorCode(errors.New("boom")); got != CodeInternal {
		t.Errorf("ErrorCode(uncoded) = %s, want INTERNAL", got)
	}
	if got := ErrorMessage(errors.New("password=hunter2")); got != "internal error" {
		t.Errorf("ErrorMessage(uncoded) = %q, want %q", got, "internal error")
	}
}

func TestCodesAreDistinct(t *testing.T) {
	t.Parallel()
	all := Codes()
	for i, c := range all {
		if c == "" || slices.Contains(all[:i], c) {
			t.Errorf("code %d (%q) is empty or repeated", i, c)
		}
	}
	if last := all[len(all)-1]; last != CodeInternal {
		t.Errorf("last code = %s, want INTERNAL", last)
	}
	all[0] = "CHANGED"
	if Codes()[0] == "CHANGED" {
		t.Error("Codes returns the list itself; a caller can change it")
	}
}
