package graph

import (
	"context"
	"errors"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/spoolhq/spool/internal/upload"
)

// presentError is the one place domain errors become GraphQL errors: the
// code goes to extensions.code, the message is the domain's, and anything
// uncoded is logged and shown only as INTERNAL.
func presentError(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		var domainErr *upload.Error
		var parseErr *gqlerror.Error
		switch {
		case errors.As(err, &domainErr):
			gqlErr.Message = domainErr.Message
			setCode(gqlErr, domainErr.Code)
		case upload.IsStorageError(err):
			log.Error("storage failure", "path", gqlErr.Path.String(), "err", err)
			gqlErr.Message = "storage is unavailable; try again shortly"
			setCode(gqlErr, upload.CodeStorageUnavailable)
		case errors.As(err, &parseErr) && parseErr.Err == nil:
			// Validation and parse errors from gqlgen itself: the client
			// sent a bad argument or query.
			if gqlErr.Extensions == nil || gqlErr.Extensions["code"] == nil {
				setCode(gqlErr, upload.CodeBadUserInput)
			}
		default:
			log.Error("internal error", "path", gqlErr.Path.String(), "err", err)
			gqlErr.Message = "internal error"
			setCode(gqlErr, upload.CodeInternal)
		}
		return gqlErr
	}
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
		log.Error("resolver panic", "panic", p)
		return errors.New("panic in resolver")
	}
}
