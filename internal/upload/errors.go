package upload

import (
	"errors"
	"fmt"
)

// Code is a stable, append-only error code that clients switch on. GraphQL
// puts it in extensions.code; the data plane maps it to an HTTP status.
type Code string

const (
	CodeUnauthenticated    Code = "UNAUTHENTICATED"
	CodeNotFound           Code = "NOT_FOUND"
	CodeBadUserInput       Code = "BAD_USER_INPUT"
	CodeInvalidType        Code = "INVALID_TYPE"
	CodeTypeMismatch       Code = "TYPE_MISMATCH"
	CodeFileTooLarge       Code = "FILE_TOO_LARGE"
	CodeBatchTooLarge      Code = "BATCH_TOO_LARGE"
	CodeQuotaExceeded      Code = "QUOTA_EXCEEDED"
	CodeInvalidChunk       Code = "INVALID_CHUNK"
	CodeChunkMissing       Code = "CHUNK_MISSING"
	CodeChecksumMismatch   Code = "CHECKSUM_MISMATCH"
	CodeChunkTooLarge      Code = "CHUNK_TOO_LARGE"
	CodeChunkTooSmall      Code = "CHUNK_TOO_SMALL"
	CodeIncomplete         Code = "INCOMPLETE"
	CodeSessionExpired     Code = "SESSION_EXPIRED"
	CodeAlreadyFinished    Code = "ALREADY_FINISHED"
	CodeForbidden          Code = "FORBIDDEN"
	CodeStorageUnavailable Code = "STORAGE_UNAVAILABLE"
	// CodeTooManySubscriptions is the API's, not the domain's: one
	// websocket runs too many subscriptions at once.
	CodeTooManySubscriptions Code = "TOO_MANY_SUBSCRIPTIONS"
	CodeInternal             Code = "INTERNAL"
)

// Error is an error a client can act on: a code and a message written for
// a person. Anything that is not an *Error is INTERNAL and never shown.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or INTERNAL when err carries none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the message of a coded err, or a generic one that
// reveals nothing about an internal failure.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// errNotFound is what every lookup returns for a missing id and for an id
// that belongs to someone else alike, so ids cannot be probed.
func errNotFound(what, id string) *Error {
	return Errorf(CodeNotFound, "%s %q not found", what, id)
}
