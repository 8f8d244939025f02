package client

import (
	"errors"
	"net/http"
	"testing"

	"github.com/cenkalti/backoff/v5"
)

// The server's passing failures are tried again; the client's own
// mistakes are not. UNAVAILABLE (a database outage) and RATE_LIMITED
// are the server asking for a retry later.
func TestRetryable(t *testing.T) {
	for _, c := range []struct {
		err   error
		retry bool
	}{
		{&GraphQLError{Code: "UNAVAILABLE"}, true},
		{&GraphQLError{Code: "RATE_LIMITED"}, true},
		{&GraphQLError{Code: "STORAGE_UNAVAILABLE"}, true},
		{&GraphQLError{Code: "INTERNAL"}, true},
		{&GraphQLError{Code: "QUOTA_EXCEEDED"}, false},
		{&GraphQLError{Code: "UNAUTHENTICATED"}, false},
		{&HTTPError{Status: http.StatusServiceUnavailable}, true},
		{&HTTPError{Status: http.StatusTooManyRequests}, true},
		{&HTTPError{Status: http.StatusRequestTimeout}, true},
		{&HTTPError{Status: http.StatusBadRequest}, false},
		{&HTTPError{Status: http.StatusNotFound}, false},
	} {
		var permanent *backoff.PermanentError
		if got := !errors.As(retryable(c.err), &permanent); got != c.retry {
			t.Errorf("retryable(%v) retries = %v, want %v", c.err, got, c.retry)
		}
	}
}
