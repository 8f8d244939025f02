package upload

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/spoolhq/spool/internal/database"
)

// Code is a stable, append-only error code that clients switch on. GraphQL
// puts it in extensions.code; the data plane maps it to an HTTP status.
// Every code is in codes, and docs/API.md lists exactly those.
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
	// CodeUnavailable: the database could not be reached (see
	// database.Unavailable); nothing was decided, and the same request
	// may succeed after RetryAfter, here or on another replica.
	CodeUnavailable Code = "UNAVAILABLE"

	// The API's codes, not the domain's: they are about a request or a
	// connection, and only the transports return them.

	// CodeTooManySubscriptions: one websocket runs too many subscriptions
	// at once.
	CodeTooManySubscriptions Code = "TOO_MANY_SUBSCRIPTIONS"
	// CodePreflightRequired: a POST to /graphql that any web page could
	// send cross-site lacks a header only a preflighted request can have.
	CodePreflightRequired Code = "PREFLIGHT_REQUIRED"
	// CodeRequestTooLarge: a GraphQL request body is over its limit.
	CodeRequestTooLarge Code = "REQUEST_TOO_LARGE"
	// CodeRateLimited: the user is over a request budget (mutations, the
	// data plane), an upload has too many chunk PUTs running, or a user
	// too many websockets. Error.RetryAfter says when to try again.
	CodeRateLimited Code = "RATE_LIMITED"
	// CodeRequestTimeout: a request body sent no byte for the body idle
	// timeout and was cut off; a chunk so cut is recorded failed and may
	// be sent again at once.
	CodeRequestTimeout Code = "REQUEST_TIMEOUT"
	// CodeOffsetMismatch: a tus PATCH starts elsewhere than where the
	// upload's stored bytes end (another request moved it, or the client
	// lost count); HEAD tells the offset to go on from.
	CodeOffsetMismatch Code = "OFFSET_MISMATCH"

	CodeInternal Code = "INTERNAL"
)

// codes is every Code; new ones are appended before INTERNAL.
var codes = []Code{
	CodeUnauthenticated,
	CodeForbidden,
	CodeNotFound,
	CodeBadUserInput,
	CodeInvalidType,
	CodeTypeMismatch,
	CodeFileTooLarge,
	CodeBatchTooLarge,
	CodeQuotaExceeded,
	CodeInvalidChunk,
	CodeChunkMissing,
	CodeChunkTooLarge,
	CodeChunkTooSmall,
	CodeChecksumMismatch,
	CodeIncomplete,
	CodeSessionExpired,
	CodeAlreadyFinished,
	CodeStorageUnavailable,
	CodeTooManySubscriptions,
	CodePreflightRequired,
	CodeRequestTooLarge,
	CodeUnavailable,
	CodeRateLimited,
	CodeRequestTimeout,
	CodeOffsetMismatch,
	CodeInternal,
}

// Codes returns every error code a client can meet, in the order
// docs/API.md lists them.
func Codes() []Code { return slices.Clone(codes) }

// Error is an error a client can act on: a code and a message written for
// a person. Err, if set, is the failure behind it (a storage engine's
// error, say): it is kept for the server's log and never shown to
// clients. Anything that is not an *Error is INTERNAL and never shown.
type Error struct {
	Code    Code
	Message string
	Err     error
	// RetryAfter, when positive, is how long the client should wait
	// before trying again; transports send it (Retry-After, in whole
	// seconds rounded up; extensions.retryAfter).
	RetryAfter time.Duration
}

// Error returns the code and message, and the cause if there is one: it
// is the text for logs, not for clients (they get Message).
func (e *Error) Error() string {
	if e.Err != nil {
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

// Unwrap returns the cause, so errors.Is and errors.As see through e.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RateLimited is RATE_LIMITED: the request may be tried again after
// retryAfter (at least a second is asked, as Retry-After counts whole
// seconds).
func RateLimited(retryAfter time.Duration, format string, args ...any) *Error {
	e := Errorf(CodeRateLimited, format, args...)
	e.RetryAfter = max(retryAfter, time.Second)
	return e
}

// RetryAfterSeconds is RetryAfter(err) in whole seconds, rounded up; 0
// when err asks for no wait.
func RetryAfterSeconds(err error) int64 {
	return int64((RetryAfter(err) + time.Second - 1) / time.Second)
}

// ErrorCode returns the code of err; an uncoded err is UNAVAILABLE when
// it says the database could not be reached (database.Unavailable: the
// one place spool classifies the drivers' errors), else INTERNAL.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if database.Unavailable(err) {
		return CodeUnavailable
	}
	return CodeInternal
}

// unavailableMessage is what clients are told of a database outage, and
// fullMessage of a database whose disk is full, which "try again
// shortly" would send them back to at once, telling no one why.
const (
	unavailableMessage = "the database is unavailable; try again shortly"
	fullMessage        = "the database is full: the server has no space left to record this; try again once space is freed"
)

// ErrorMessage returns the message of a coded err, or a generic one that
// reveals nothing about an internal failure.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if database.Unavailable(err) {
		return outageMessage(err)
	}
	return "internal error"
}

// UnavailableRetryAfter is the wait spool suggests after UNAVAILABLE
// (HTTP Retry-After, GraphQL extensions.retryAfter): a database failover
// or restart takes seconds, and a load balancer's health check moves
// traffic off a replica that cannot reach it within a few more.
const UnavailableRetryAfter = 2 * time.Second

// FullRetryAfter is the wait spool suggests when its disk is full
// (STORAGE_UNAVAILABLE or UNAVAILABLE saying so): a full disk stays full
// until someone frees space, and clients told to retry at once spent
// their tries (the CLI's ten, about 40 s) on answers that would be the
// same. Thirty seconds lets those tries span five minutes, for an
// operator to free space, at one request a client every half minute.
const FullRetryAfter = 30 * time.Second

// RetryAfter is how long a client should wait before retrying after err:
// the error's own RetryAfter (RATE_LIMITED, a full disk's storage),
// FullRetryAfter for a database whose disk is full, UnavailableRetryAfter
// for another UNAVAILABLE, else zero (not an error to retry after a
// wait).
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter
	}
	if ErrorCode(err) == CodeUnavailable {
		if database.Full(err) {
			return FullRetryAfter
		}
		return UnavailableRetryAfter
	}
	return 0
}

// Unavailable returns UNAVAILABLE with cause as its cause (for the log):
// for callers that met a database outage outside the service, such as
// a token's user lookup.
func Unavailable(cause error) *Error {
	return &Error{Code: CodeUnavailable, Message: outageMessage(cause), Err: cause}
}

// outageMessage is what clients are told of err, a database outage:
// that the database is full, or only that it is unavailable.
func outageMessage(err error) string {
	if database.Full(err) {
		return fullMessage
	}
	return unavailableMessage
}

// storageError is STORAGE_UNAVAILABLE with the engine's error as its
// cause: op says what spool was doing, for the log; clients are only told
// to retry, and when the disk is full, that it is, and to wait
// FullRetryAfter: "unavailable; try again shortly" would send them back
// at once to a disk that stays full until someone frees space, and tell
// no one why.
func storageError(op string, err error) *Error {
	e := &Error{Code: CodeStorageUnavailable, Message: "storage is unavailable; try again shortly", Err: fmt.Errorf("%s: %w", op, err)}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		e.Message = "storage is full: the server has no space left for these bytes; try again once space is freed"
		e.RetryAfter = FullRetryAfter
	}
	return e
}

// errNotFound is what every lookup returns for a missing id and for an id
// that belongs to someone else alike, so ids cannot be probed.
func errNotFound(what, id string) *Error {
	return Errorf(CodeNotFound, "%s %q not found", what, id)
}
