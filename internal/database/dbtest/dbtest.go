// Package dbtest gives tests a PostgreSQL database of their own: a fresh,
// empty database on the server named by SPOOL_TEST_DATABASE_URL, dropped
// when the test ends, so tests run in parallel and leave nothing behind.
// Where no server answers, tests skip with a message saying so, except
// in CI (CI=true), where a missing server fails them.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver, "pgx"

	"github.com/spoolhq/spool/internal/required"
)

// EnvURL names the variable holding the URL of the test server (any
// database on it: tests create their own next to it).
const EnvURL = "SPOOL_TEST_DATABASE_URL"

// DefaultURL is the test server when EnvURL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// ServerURL returns the test server's URL: $SPOOL_TEST_DATABASE_URL, or
// DefaultURL.
func ServerURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// Required returns the test server's URL once it answers. If it does not,
// the test is skipped with a message naming the server and EnvURL, or
// failed when CI=true.
func Required(t testing.TB) string {
	t.Helper()
	server := ServerURL()
	if err := ping(context.Background(), server); err != nil {
		required.Missing(t, "PostgreSQL at %s does not answer (%v); start it or point %s at one", redact(server), err, EnvURL)
	}
	return server
}

// Postgres returns the URL of a new, empty database on the test server,
// dropped (with its connections) when the test and its cleanups end. It
// skips or fails the test as Required does.
func Postgres(t testing.TB) string {
	t.Helper()
	server := Required(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL, drop, err := NewDatabase(ctx, server)
	if err != nil {
		t.Fatalf("creating a test database: %v", err)
	}
	// Registered first, so it runs after the cleanups of whatever the
	// test opened on the database.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx); err != nil {
			t.Errorf("dropping the test database: %v", err)
		}
	})
	return dbURL
}

// NewDatabase creates a database named spool_test_<random> on the server
// at serverURL and returns its URL and a function that drops it, closing
// any connection still open to it. It is Postgres without a test, for
// tools such as the migration generator.
func NewDatabase(ctx context.Context, serverURL string) (dbURL string, drop func(context.Context) error, err error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, errors.New("the server URL is not a valid URL")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "spool_test_" + hex.EncodeToString(b[:])
	// template0, because CREATE DATABASE from template1 (the default)
	// fails while anyone else is connected to template1.
	if err := admin(ctx, serverURL, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", nil, fmt.Errorf("creating database %s on %s: %w", name, redact(serverURL), err)
	}
	u.Path = "/" + name
	drop = func(ctx context.Context) error {
		if err := admin(ctx, serverURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("dropping database %s on %s: %w", name, redact(serverURL), err)
		}
		return nil
	}
	return u.String(), drop, nil
}

// Host returns the host:port of dbURL, a PostgreSQL URL.
func Host(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("the database URL is not a valid URL")
	}
	return u.Host
}

// Rewrite returns dbURL reached at host (host:port) instead, unless host
// is "", with the query parameters of params (name, value, name,
// value, …) set.
func Rewrite(t testing.TB, dbURL, host string, params ...string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || len(params)%2 != 0 {
		t.Fatal("Rewrite: the database URL is not a valid URL, or params are not name and value pairs")
	}
	if host != "" {
		u.Host = host
	}
	q := u.Query()
	for i := 0; i < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ReadOnly makes the test database at dbURL (one of Postgres's) take no
// writes, as a standby takes none, when on is true, and writes again when
// it is false. Turning it on also ends the database's sessions, so that
// what reconnects finds it read-only: PostgreSQL applies the setting to
// sessions as they start.
func ReadOnly(t testing.TB, dbURL string, on bool) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal("the database URL is not a valid URL")
	}
	name := strings.TrimPrefix(u.Path, "/")
	stmts := []string{"ALTER DATABASE " + name + " RESET default_transaction_read_only"}
	if on {
		stmts = []string{"ALTER DATABASE " + name + " SET default_transaction_read_only = on",
			"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + name + "'"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin(ctx, ServerURL(), stmts...); err != nil {
		t.Fatalf("making database %s read-only (%v): %v", name, on, err)
	}
}

// admin runs statements on the server's own database.
func admin(ctx context.Context, serverURL string, stmts ...string) error {
	db, err := sql.Open("pgx", serverURL)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

func ping(ctx context.Context, serverURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", serverURL)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// redact hides the URL's password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an invalid URL)"
	}
	return u.Redacted()
}
