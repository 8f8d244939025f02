package graph

import (
	"context"
	"errors"
	"log/slog"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/spoolhq/spool/internal/upload"
)

// presentError is the one place domain errors become GraphQL errors: the
// code goes to extensions.code, the message is the domain's, and anything
// uncoded is logged and shown only as INTERNAL.
func presentError(log *slog.Logger, uploads *upload.Service) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		var domainErr *upload.Error
		var parseErr *gqlerror.Error
		var numErr *strconv.NumError
		switch {
		case errors.As(err, &domainErr) && domainErr.Code != upload.CodeUnavailable:
			if domainErr.Err != nil {
				// A failure behind the code (storage, say): the client
				// sees the code and message, the log the cause.
				log.ErrorContext(ctx, "operation failed", "path", gqlErr.Path.String(), "code", domainErr.Code, "err", err)
			}
			gqlErr.Message = domainErr.Message
			setCode(gqlErr, domainErr.Code)
			if wait := upload.RetryAfterSeconds(domainErr); wait > 0 {
				gqlErr.Extensions["retryAfter"] = wait
			}
		case errors.As(err, &parseErr) && parseErr.Err == nil && parseErr.Rule == int64LiteralsRule:
			// A literal gqlgen could not bind: the client's input, as
			// for a variable below.
			setCode(gqlErr, upload.CodeBadUserInput)
		case errors.As(err, &parseErr) && parseErr.Err == nil:
			// Validation and parse errors from gqlgen itself: the client
			// sent a bad argument or query.
			if gqlErr.Extensions == nil || gqlErr.Extensions["code"] == nil {
				setCode(gqlErr, upload.CodeBadUserInput)
			}
		case errors.As(err, &numErr) && argumentError(ctx):
			// An Int64 variable beyond int64, or not a number: say so in
			// words rather than strconv's.
			gqlErr.Message = numberProblem(argumentName(gqlErr.Path), numErr.Num, numErr.Err)
			setCode(gqlErr, upload.CodeBadUserInput)
		case errors.Is(err, context.Canceled) && ctx.Err() != nil:
			// The client stopped the operation (or hung up) while it
			// started: nothing failed, and nobody reads the answer.
			log.DebugContext(ctx, "operation cancelled by the client", "path", gqlErr.Path.String())
			gqlErr.Message = "operation cancelled"
			setCode(gqlErr, upload.CodeInternal)
		case argumentError(ctx):
			// A value gqlgen could not coerce to its scalar (a malformed
			// Cursor, say): the client's input, not ours.
			setCode(gqlErr, upload.CodeBadUserInput)
		case upload.ErrorCode(err) == upload.CodeUnavailable: // coded, or the driver's
			// The database could not be reached: the client may retry
			// the same operation after extensions.retryAfter seconds.
			// Logged at a bounded rate, as every operation fails alike.
			// After the argument cases: a malformed cursor's decoder
			// fails with io.ErrUnexpectedEOF too, which is the client's.
			uploads.NoteUnavailable("GraphQL "+gqlErr.Path.String(), err)
			gqlErr.Message = upload.ErrorMessage(err)
			setCode(gqlErr, upload.CodeUnavailable)
			gqlErr.Extensions["retryAfter"] = upload.RetryAfterSeconds(err)
		default:
			log.ErrorContext(ctx, "internal error", "path", gqlErr.Path.String(), "err", err)
			gqlErr.Message = "internal error"
			setCode(gqlErr, upload.CodeInternal)
		}
		return gqlErr
	}
}

// argumentError reports whether the error arose while gqlgen coerced the
// field's arguments, before any resolver ran: the field has arguments but
// its context holds none yet.
func argumentError(ctx context.Context) bool {
	fc := graphql.GetFieldContext(ctx)
	return fc != nil && fc.Args == nil && len(fc.Field.Arguments) > 0
}

// argumentName is the last name in path (an argument's, or an input
// field's), or "value" if it has none.
func argumentName(path ast.Path) string {
	for i := len(path) - 1; i >= 0; i-- {
		if name, ok := path[i].(ast.PathName); ok {
			return string(name)
		}
	}
	return "value"
}

func setCode(e *gqlerror.Error, code upload.Code) {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions["code"] = string(code)
}

// recoverPanic turns a resolver panic into INTERNAL, logged with its value.
func recoverPanic(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "resolver panic", "panic", p)
		return errors.New("panic in resolver")
	}
}
