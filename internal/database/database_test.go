package database_test

import (
	"context"
	"io/fs"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/spoolhq/spool/ent/user"
	"github.com/spoolhq/spool/internal/database"
	"github.com/spoolhq/spool/internal/database/dbtest"
	"github.com/spoolhq/spool/internal/upload"
)

// A DB serves as the database's health check (/readyz).
var _ upload.Pinger = (*database.DB)(nil)

// location is where a test's database lives: a PostgreSQL URL, or a
// SQLite file when url is empty.
type location struct{ url, path string }

// eachEngine runs test against a fresh, empty database of each engine.
// The PostgreSQL run skips (or fails in CI) where no server answers.
func eachEngine(t *testing.T, test func(t *testing.T, loc location)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		test(t, location{path: filepath.Join(t.TempDir(), database.SQLiteFile)})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		test(t, location{url: dbtest.Postgres(t)})
	})
}

func open(t *testing.T, loc location, opts ...database.Option) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), loc.url, loc.path, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// latest is the highest version among the embedded migrations of the
// location's dialect.
func latest(t *testing.T, loc location) int64 {
	t.Helper()
	files, err := fs.Glob(database.Migrations(), loc.dialect()+"/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no embedded migrations for %s: %v", loc.dialect(), err)
	}
	var v int64
	for _, f := range files {
		n, err := strconv.ParseInt(strings.SplitN(path.Base(f), "_", 2)[0], 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		v = max(v, n)
	}
	return v
}

// The migrations and ent/schema must never drift apart: once migrated, a
// fresh database is exactly what ent would make of ent/schema.
func TestMigrationsMatchEntSchema(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, loc location) {
		db := open(t, loc)
		ddl, err := db.Drift(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(ddl) != "" {
			t.Fatalf("ent/schema and internal/database/migrations/%s disagree; run `make migrations NAME=…`. ent would run:\n%s", loc.dialect(), ddl)
		}
	})
}

func (l location) dialect() string {
	if l.url != "" {
		return "postgres"
	}
	return "sqlite"
}

func TestOpenTwiceMigratesOnce(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, loc location) {
		ctx := context.Background()
		first, err := database.Open(ctx, loc.url, loc.path, database.WithoutMigrate())
		if err != nil {
			t.Fatal(err)
		}
		applied, err := first.Up(ctx)
		if err != nil {
			t.Fatalf("first Up: %v", err)
		}
		if len(applied) == 0 || applied[0].Version != 1 || applied[0].Name != "00001_init.sql" {
			t.Fatalf("first Up applied %+v, want 00001_init.sql first", applied)
		}
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}

		second := open(t, loc, database.WithoutMigrate())
		again, err := second.Up(ctx)
		if err != nil || len(again) != 0 {
			t.Fatalf("second Up = %+v, %v; want nothing applied", again, err)
		}
		v, err := second.Version(ctx)
		if want := latest(t, loc); err != nil || v != want || applied[len(applied)-1].Version != want {
			t.Fatalf("Version = %d, %v; want %d", v, err, want)
		}
		if err := second.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

// migrationsWith returns the embedded migrations of the dialect plus
// extra files, as a later release would ship them.
func migrationsWith(t *testing.T, loc location, extra map[string]string) fs.FS {
	t.Helper()
	init, err := fs.ReadFile(database.Migrations(), loc.dialect()+"/00001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	m := fstest.MapFS{"00001_init.sql": {Data: init}}
	for name, body := range extra {
		m[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return m
}

// An upgrade applies only the new migration, and the data stays.
func TestUpgradeKeepsData(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, loc location) {
		ctx := context.Background()
		v1 := open(t, loc, database.WithMigrations(migrationsWith(t, loc, nil)))
		u, err := v1.Client.User.Create().SetSubject("alice").SetQuotaBytes(1 << 30).SetReservedBytes(42).Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		v1.Close()

		v2, err := database.Open(ctx, loc.url, loc.path, database.WithoutMigrate(),
			database.WithMigrations(migrationsWith(t, loc, map[string]string{
				"00002_nickname.sql": "-- +goose Up\nALTER TABLE users ADD COLUMN nickname text NULL;\n",
			})))
		if err != nil {
			t.Fatal(err)
		}
		defer v2.Close()
		applied, err := v2.Up(ctx)
		if err != nil {
			t.Fatalf("upgrading: %v", err)
		}
		if len(applied) != 1 || applied[0].Version != 2 {
			t.Fatalf("upgrade applied %+v, want only version 2", applied)
		}
		got, err := v2.Client.User.Get(ctx, u.ID)
		if err != nil {
			t.Fatalf("the user did not survive the upgrade: %v", err)
		}
		if got.Subject != "alice" || got.ReservedBytes != 42 {
			t.Fatalf("after the upgrade: %+v, want alice with 42 reserved bytes", got)
		}
		var nickname *string
		if err := v2.SQL().QueryRowContext(ctx, "SELECT nickname FROM users").Scan(&nickname); err != nil || nickname != nil {
			t.Fatalf("the new column: %v, %v", nickname, err)
		}
	})
}

// A database made by a release from before versioned migrations (ent's
// auto-migration at start) is adopted: its data stays, and every
// migration counts as applied.
func TestAdoptsDatabaseFromBeforeMigrations(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, loc location) {
		ctx := context.Background()
		legacy := open(t, loc, database.WithoutMigrate())
		ddl, err := fs.ReadFile(database.Migrations(), loc.dialect()+"/00001_init.sql")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := legacy.SQL().ExecContext(ctx, string(ddl)); err != nil {
			t.Fatalf("making the legacy schema: %v", err)
		}
		if err := legacy.Client.User.Create().SetSubject("bob").SetQuotaBytes(7).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		legacy.Close()

		db := open(t, loc)
		if n, err := db.Client.User.Query().Where(user.Subject("bob")).Count(ctx); err != nil || n != 1 {
			t.Fatalf("bob after adoption: %d, %v", n, err)
		}
		v, err := db.Version(ctx)
		if err != nil || v != latest(t, loc) {
			t.Fatalf("Version after adoption = %d, %v", v, err)
		}
		if ddl, err := db.Drift(ctx); err != nil || strings.TrimSpace(ddl) != "" {
			t.Fatalf("drift after adoption: %q, %v", ddl, err)
		}
	})
}

func TestUnknownScheme(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"mysql://root@localhost/spool", "sqlite:///tmp/x.db"} {
		_, err := database.Open(context.Background(), u, "")
		scheme, _, _ := strings.Cut(u, ":")
		if err == nil || !strings.Contains(err.Error(), `"`+scheme+`"`) || !strings.Contains(err.Error(), "postgres://") {
			t.Errorf("Open(%q) = %v; want an error naming %q and postgres://", u, err, scheme)
		}
	}
	if _, err := database.Open(context.Background(), "", ""); err == nil {
		t.Error("Open with neither a URL nor a file succeeded")
	}
}

func TestUnreachablePostgres(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there, so the dial is refused.
	_, err := database.Open(context.Background(), "postgresql://spool:hunter2@127.0.0.1:1/spool?sslmode=disable", "")
	if err == nil {
		t.Fatal("Open of an unreachable server succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "connecting to PostgreSQL at postgresql://spool:xxxxx@127.0.0.1:1/spool") {
		t.Errorf("error %q does not say which server could not be reached", msg)
	}
	if strings.Contains(msg, "hunter2") {
		t.Errorf("error %q shows the password", msg)
	}
}

// A malformed PostgreSQL URL fails Open, saying what is wrong, and never
// shows the password; none of these reach the network.
func TestMalformedPostgresURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"postgres://spool:hunter2@127.0.0.1:port/spool", "not a valid URL"},
		{"postgres://spool:hunter2@[::1/spool", "not a valid URL"},
		{"host=127.0.0.1 user=spool password=hunter2", "no scheme"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?sslmode=bogus", "sslmode is invalid"},
		{"postgresql://spool:hunter2@127.0.0.1:5432/spool?connect_timeout=soon", "connect_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=-1", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=soon", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=1.5", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=30s", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=99999999999", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?tcp_user_timeout=", "tcp_user_timeout"},
		{"postgres://spool:hunter2@127.0.0.1:5432/spool?default_query_exec_mode=bogus", "default_query_exec_mode"},
	} {
		db, err := database.Open(context.Background(), tc.url, "")
		if err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded, want an error saying %q", tc.url, tc.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "hunter2") {
			t.Errorf("Open(%q) = %q; want it to say %q and not show the password", tc.url, msg, tc.want)
		}
	}
}

// A setting in the URL that PostgreSQL refuses (lock_timeout, which
// CONFIG suggests, or tcp_keepalives_idle, which spool would otherwise
// set itself, with a value it cannot read) fails Open with the server's
// word, naming the setting, and never shows the password.
func TestPostgresRefusesABadSetting(t *testing.T) {
	t.Parallel()
	for _, setting := range []string{"lock_timeout", "tcp_keepalives_idle"} {
		u, err := url.Parse(dbtest.Required(t))
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(u.User.Username(), "hunter2")
		q := u.Query()
		q.Set(setting, "soon")
		u.RawQuery = q.Encode()
		db, err := database.Open(context.Background(), u.String(), "", database.WithoutMigrate())
		if err == nil {
			db.Close()
			t.Fatalf("Open with %s=soon succeeded, want PostgreSQL's refusal", setting)
		}
		if msg := err.Error(); !strings.Contains(msg, setting) || strings.Contains(msg, "hunter2") {
			t.Errorf("Open with %s=soon: %q; want it to name the setting and not show the password", setting, msg)
		}
	}
}

// Replicas starting at once on a fresh database apply each migration
// exactly once: goose holds an advisory lock while it migrates.
func TestConcurrentStartsMigrateOnce(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.Postgres(t)
	migrateAtOnce(t, dbURL, dbURL)
}

// So do replicas behind a pooler in transaction mode, and they leave no
// lock behind: the lock a session took (pg_advisory_lock) could be
// taken on one pooled server connection and let go on another, where it
// was not held, so it stayed; replicas waited on it at once, or took it
// again as their own on the same server connection and migrated side by
// side ("duplicate key value violates unique constraint").
func TestConcurrentStartsMigrateOnceBehindAPooler(t *testing.T) {
	t.Parallel()
	dbURL := dbtest.Postgres(t)
	migrateAtOnce(t, dbtest.PgBouncer(t, dbURL), dbURL)
}

// migrateAtOnce opens four replicas' databases at through and migrates
// them at once; each migration must be applied once, and no advisory
// lock be left in the database (read at direct, past any pooler).
func migrateAtOnce(t *testing.T, through, direct string) {
	t.Helper()
	ctx := context.Background()
	const replicas = 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied []database.Applied
	)
	for range replicas {
		wg.Go(func() {
			db, err := database.Open(ctx, through, "", database.WithoutMigrate(), database.WithMaxOpenConns(2))
			if err != nil {
				t.Error(err)
				return
			}
			defer db.Close()
			a, err := db.Up(ctx)
			if err != nil {
				t.Errorf("Up: %v", err)
			}
			mu.Lock()
			applied = append(applied, a...)
			mu.Unlock()
		})
	}
	wg.Wait()
	files, err := fs.Glob(database.Migrations(), "postgres/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded PostgreSQL migrations: %v, %v", files, err)
	}
	seen := map[int64]int{}
	for _, a := range applied {
		seen[a.Version]++
	}
	for v := int64(1); v <= int64(len(files)); v++ {
		if seen[v] != 1 {
			t.Fatalf("the replicas applied %+v together, want each of versions 1..%d once", applied, len(files))
		}
	}
	if len(applied) != len(files) {
		t.Fatalf("the replicas applied %d migrations, want %d", len(applied), len(files))
	}
	db := open(t, location{url: direct})
	var rows int
	if err := db.SQL().QueryRowContext(ctx, "SELECT count(*) FROM goose_db_version WHERE version_id = 1").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("version 1 recorded %d times (%v), want once", rows, err)
	}
	if held := dbtest.AdvisoryLocks(t, direct); held != 0 {
		t.Fatalf("%d advisory locks are held in the database once every replica has migrated, want none", held)
	}
}

// The drift check is not vacuous: a migration that lacks part of
// ent/schema shows up as the DDL ent would add.
func TestDriftShowsWhatMigrationsLack(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, loc location) {
		init, err := fs.ReadFile(database.Migrations(), loc.dialect()+"/00001_init.sql")
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, line := range strings.Split(string(init), "\n") {
			if !strings.Contains(line, "mediafile_content_hash") {
				kept = append(kept, line)
			}
		}
		db := open(t, loc, database.WithMigrations(fstest.MapFS{
			"00001_init.sql": {Data: []byte(strings.Join(kept, "\n"))},
		}))
		ddl, err := db.Drift(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ddl, "mediafile_content_hash") {
			t.Fatalf("Drift = %q, want the missing index mediafile_content_hash", ddl)
		}
	})
}

// A migration file whose name has no version is refused (goose itself
// would skip it, and the schema would silently lack it), and so is a
// second file of one version, whether Open migrates or not.
func TestMisnamedMigrationIsRefused(t *testing.T) {
	t.Parallel()
	init, err := fs.ReadFile(database.Migrations(), "sqlite/00001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	const ddl = "-- +goose Up\nALTER TABLE users ADD COLUMN nickname text NULL;\n"
	for _, name := range []string{"nickname.sql", "00002-nickname.sql", "v2_nickname.sql", "00000_nickname.sql", "00001_nickname.sql"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			migrations := fstest.MapFS{"00001_init.sql": {Data: init}, name: {Data: []byte(ddl)}}
			for _, opts := range [][]database.Option{
				{database.WithMigrations(migrations)},
				{database.WithMigrations(migrations), database.WithoutMigrate()},
			} {
				db, err := database.Open(context.Background(), "", filepath.Join(t.TempDir(), database.SQLiteFile), opts...)
				if err == nil {
					db.Close()
					t.Fatalf("Open with migration %s succeeded, want an error", name)
				}
				if !strings.Contains(err.Error(), name) {
					t.Errorf("Open: %v; want it to name %s", err, name)
				}
			}
		})
	}
}

// ListenPool is, on PostgreSQL, a pool of one connection to the same
// database as the ent client's, which can LISTEN and hear a NOTIFY sent
// through the ent client's pool; SQLite has none.
func TestListenPool(t *testing.T) {
	eachEngine(t, func(t *testing.T, loc location) {
		db := open(t, loc)
		pool := db.ListenPool()
		if loc.url == "" {
			if pool != nil {
				t.Fatal("SQLite has a ListenPool")
			}
			return
		}
		if pool == nil {
			t.Fatal("PostgreSQL has no ListenPool")
		}
		ctx := context.Background()
		if n := pool.Config().MaxConns; n != 1 {
			t.Errorf("ListenPool holds up to %d connections, want 1", n)
		}
		conn, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, "LISTEN spool_test"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().ExecContext(ctx, "SELECT pg_notify('spool_test', current_database())"); err != nil {
			t.Fatal(err)
		}
		waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second) // hang guard
		defer cancel()
		n, err := conn.Conn().WaitForNotification(waitCtx)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		var name string
		if err := db.SQL().QueryRowContext(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if n.Payload != name {
			t.Errorf("the LISTEN connection heard %q, want the ent pool's database %q", n.Payload, name)
		}
		var app string
		if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil {
			t.Fatal(err)
		}
		if app != database.ListenApplicationName {
			t.Errorf("the LISTEN connection's application_name is %q, want %q", app, database.ListenApplicationName)
		}
		// A name the URL gives is kept.
		named := open(t, location{url: loc.url + "&application_name=mine"})
		if got := named.ListenPool().Config().ConnConfig.RuntimeParams["application_name"]; got != "mine" {
			t.Errorf("with application_name=mine in the URL, the LISTEN connection's is %q", got)
		}
	})
}
