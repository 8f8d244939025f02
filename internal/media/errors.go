package media

import (
	"errors"
	"fmt"
)

// BadFileError says the file itself is unusable: it does not decode, it is
// not what its MIME type says, or it declares more pixels than the limit.
// Processing it again gives the same answer, so the caller records the
// error on the media file (its message is written for the uploader to
// read) instead of retrying. Every other error from Process is transient.
type BadFileError struct {
	// Reason is the sentence shown to the user, e.g. "the file is not a
	// valid PNG image".
	Reason string
	// Cause is the decoder's or tool's own words, if any.
	Cause error
}

func (e *BadFileError) Error() string {
	if e.Cause == nil {
		return e.Reason
	}
	return e.Reason + " (" + e.Cause.Error() + ")"
}

func (e *BadFileError) Unwrap() error { return e.Cause }

// IsBadFile reports whether err, or an error it wraps, is a *BadFileError:
// a permanent verdict on the file rather than a failure worth retrying.
func IsBadFile(err error) bool {
	var bad *BadFileError
	return errors.As(err, &bad)
}

func badFile(cause error, format string, args ...any) *BadFileError {
	return &BadFileError{Reason: fmt.Sprintf(format, args...), Cause: cause}
}
