// Package sqltx lets code that runs an ent transaction reach the
// *sql.Tx under it, so that work written against database/sql (River's
// job inserts) commits or rolls back with the ent changes: one
// transaction, not two.
//
// ent keeps its transaction's *sql.Tx private. Wrap puts a thin
// dialect.Driver around ent's SQL driver; when it begins a transaction
// with a context that carries a Slot (WithSlot), it records the *sql.Tx
// in the slot. Everything else passes through unchanged.
//
//	ctx, slot := sqltx.WithSlot(ctx)
//	tx, _ := client.Tx(ctx)      // client built over sqltx.Wrap(drv)
//	queue.InsertTx(ctx, slot.Tx(), job)
//
// It imports only database/sql and ent's dialect packages, so the domain
// (internal/upload) may use it.
//
// Being the one driver every ent call goes through, it is also where
// failed database calls are observed (OnError), for metrics, where reads
// can be sent to a pool of their own (ReadsOn), where transactions
// that nothing can cancel can skip database/sql's watch (TxOnConn), and
// where a driver's option for one statement reaches the statements ent
// writes (WithStatementOption).
package sqltx

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
)

// Driver is ent's SQL driver recording the *sql.Tx of the transactions
// it begins for a context with a Slot.
type Driver struct {
	*entsql.Driver
	onError  func(op string, err error) // nil: nobody is told
	reads    *entsql.Driver             // nil: reads go to Driver too
	txOnConn bool
}

var _ dialect.Driver = (*Driver)(nil)

// Option changes what Wrap's driver does.
type Option func(*Driver)

// OnError makes the driver call fn for each call that fails, with op one
// of "exec", "query", "begin", "commit" and "rollback". Calls failing
// because their context was cancelled (a client that went away) and
// rollbacks of transactions already ended are not failures of the
// database, and are not reported. fn must be safe for concurrent use.
func OnError(fn func(op string, err error)) Option {
	return func(d *Driver) { d.onError = fn }
}

// ReadsOn sends the queries run outside a transaction that are plain
// SELECTs to r instead (SQLite's read connections, which WAL lets read
// while the one writer writes). Anything else, ent's INSERT … RETURNING
// included, which ent runs as a query, stays on the wrapped driver.
//
// A read sent to r whose context has no deadline runs to its end even if
// the context is cancelled (a request whose client went away). It is a
// few rows read in this process; watching for the cancellation took two
// goroutines a read, one of database/sql's and one of the SQLite
// driver's, and with a CPU idle each woke it up and put it back to sleep
// (docs/DESIGN.md, "Nothing watches SQLite's chunk path for
// cancellation"). A deadline is kept, and watched: someone set it on
// purpose.
func ReadsOn(r *entsql.Driver) Option {
	return func(d *Driver) { d.reads = r }
}

// forQuery returns the driver a query outside a transaction runs on, and
// the context it runs with.
func (d *Driver) forQuery(ctx context.Context, query string) (*entsql.Driver, context.Context) {
	if d.reads == nil || !isSelect(query) {
		return d.Driver, ctx
	}
	if _, bounded := ctx.Deadline(); !bounded {
		ctx = context.WithoutCancel(ctx)
	}
	return d.reads, ctx
}

// TxOnConn runs each transaction whose context cannot be cancelled, and
// that no Slot waits for, as BEGIN … COMMIT on a connection taken from
// the pool, instead of as a database/sql transaction. database/sql
// starts a goroutine for every transaction, and another for every query
// in it, to roll it back should its context be cancelled; the SQLite
// driver adds its own for BEGIN and COMMIT. For a context that cannot be
// cancelled there is nothing to watch. SQLite's chunk receipts are such
// transactions (recorded even when the client has gone), one a chunk.
// A Slot's transaction stays a *sql.Tx, which River needs.
func TxOnConn() Option {
	return func(d *Driver) { d.txOnConn = true }
}

// isSelect reports whether query begins with SELECT. ent writes its
// reads as a single SELECT; a WITH may hide a write, so it does not count.
func isSelect(query string) bool {
	q := strings.TrimLeft(query, " \t\r\n(")
	return len(q) >= 6 && strings.EqualFold(q[:6], "select")
}

// Wrap returns drv recording transactions into slots.
func Wrap(drv *entsql.Driver, opts ...Option) *Driver {
	d := &Driver{Driver: drv}
	for _, o := range opts {
		o(d)
	}
	return d
}

// observe tells onError of err, if it is a failure of the database.
func (d *Driver) observe(op string, err error) {
	if err == nil || d.onError == nil || errors.Is(err, context.Canceled) || errors.Is(err, sql.ErrTxDone) {
		return
	}
	d.onError(op, err)
}

// statementOptionKey is the context key of WithStatementOption.
type statementOptionKey struct{}

// WithStatementOption returns ctx under which every statement run outside
// a transaction takes opt as its first argument. It is how a driver's
// option for one statement reaches the statements ent's builders write:
// pgx reads a leading pgx.QueryExecMode as the mode of that statement
// (database.PlannedEachRun). Only for a driver that takes such an
// argument; SQLite's would take it for the statement's first value.
func WithStatementOption(ctx context.Context, opt any) context.Context {
	return context.WithValue(ctx, statementOptionKey{}, opt)
}

// withOption is args with the context's statement option, if any, first.
func withOption(ctx context.Context, args []any) []any {
	opt := ctx.Value(statementOptionKey{})
	if opt == nil {
		return args
	}
	return append([]any{opt}, args...)
}

// entArgs is withOption for ent's untyped arguments, a []any.
func entArgs(ctx context.Context, args any) any {
	if ctx.Value(statementOptionKey{}) == nil {
		return args
	}
	a, _ := args.([]any)
	return withOption(ctx, a)
}

// Exec runs a statement outside a transaction (ent's writes).
func (d *Driver) Exec(ctx context.Context, query string, args, v any) error {
	err := d.Driver.Exec(ctx, query, entArgs(ctx, args), v)
	d.observe("exec", err)
	return err
}

// Query runs a query outside a transaction (ent's reads).
func (d *Driver) Query(ctx context.Context, query string, args, v any) error {
	drv, ctx := d.forQuery(ctx, query)
	err := drv.Query(ctx, query, entArgs(ctx, args), v)
	d.observe("query", err)
	return err
}

// ExecContext runs raw SQL outside a transaction (ent's
// Client.ExecContext).
func (d *Driver) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := d.Driver.ExecContext(ctx, query, withOption(ctx, args)...)
	d.observe("exec", err)
	return res, err
}

// QueryContext runs raw SQL outside a transaction (ent's
// Client.QueryContext).
func (d *Driver) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	drv, ctx := d.forQuery(ctx, query)
	rows, err := drv.QueryContext(ctx, query, withOption(ctx, args)...)
	d.observe("query", err)
	return rows, err
}

// Tx begins a transaction (ent's Client.Tx calls this).
func (d *Driver) Tx(ctx context.Context) (dialect.Tx, error) { return d.BeginTx(ctx, nil) }

// BeginTx begins a transaction with options (ent's Client.BeginTx calls
// this) and records its *sql.Tx in the context's slot, if any.
func (d *Driver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	slot, slotted := ctx.Value(slotKey{}).(*Slot)
	var tx dialect.Tx
	var err error
	if d.txOnConn && opts == nil && !slotted && ctx.Done() == nil {
		tx, err = beginOnConn(ctx, d.Driver.DB())
	} else {
		tx, err = d.Driver.BeginTx(ctx, opts)
	}
	if err != nil {
		d.observe("begin", err)
		return nil, err
	}
	if slotted {
		if t, ok := tx.(*entsql.Tx); ok {
			slot.tx, _ = t.Tx.(*sql.Tx)
		}
	}
	if d.onError == nil {
		return tx, nil
	}
	t, ok := tx.(*entsql.Tx)
	if !ok {
		return tx, nil
	}
	return &observedTx{Tx: t, d: d}, nil
}

// observedTx is a transaction whose failed calls its driver observes.
// It keeps *entsql.Tx's ExecContext and QueryContext, which ent's
// generated Tx asks for (raw SQL inside a transaction).
type observedTx struct {
	*entsql.Tx
	d *Driver
}

func (t *observedTx) Exec(ctx context.Context, query string, args, v any) error {
	err := t.Tx.Exec(ctx, query, args, v)
	t.d.observe("exec", err)
	return err
}

func (t *observedTx) Query(ctx context.Context, query string, args, v any) error {
	err := t.Tx.Query(ctx, query, args, v)
	t.d.observe("query", err)
	return err
}

func (t *observedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	res, err := t.Tx.ExecContext(ctx, query, args...)
	t.d.observe("exec", err)
	return res, err
}

func (t *observedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	rows, err := t.Tx.QueryContext(ctx, query, args...)
	t.d.observe("query", err)
	return rows, err
}

func (t *observedTx) Commit() error {
	err := t.Tx.Commit()
	t.d.observe("commit", err)
	return err
}

func (t *observedTx) Rollback() error {
	err := t.Tx.Rollback()
	t.d.observe("rollback", err)
	return err
}

type slotKey struct{}

// Slot receives the *sql.Tx of the transaction begun with its context.
type Slot struct{ tx *sql.Tx }

// WithSlot returns a context whose next transaction, begun through a
// Driver, is recorded in the returned slot.
func WithSlot(ctx context.Context) (context.Context, *Slot) {
	s := &Slot{}
	return context.WithValue(ctx, slotKey{}, s), s
}

// Tx returns the recorded transaction, or nil when none was begun
// through a Driver (the ent client is not built over Wrap).
func (s *Slot) Tx() *sql.Tx { return s.tx }

// beginOnConn begins a transaction with BEGIN on a connection of db's
// pool, held until the transaction ends (TxOnConn).
func beginOnConn(ctx context.Context, db *sql.DB) (dialect.Tx, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &entsql.Tx{Conn: entsql.Conn{ExecQuerier: conn}, Tx: &connTx{conn: conn}}, nil
}

// connTx ends a transaction begun by beginOnConn, then hands its
// connection back to the pool.
type connTx struct {
	conn  *sql.Conn
	ended bool
}

func (t *connTx) Commit() error {
	if t.ended {
		return sql.ErrTxDone
	}
	t.ended = true
	if _, err := t.conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		// SQLite leaves the transaction open when its COMMIT fails (a
		// deferred constraint, a busy database): it is rolled back, so
		// that no later user of the connection finds itself inside it.
		_ = t.release("ROLLBACK")
		return err
	}
	return t.conn.Close()
}

func (t *connTx) Rollback() error {
	if t.ended {
		return sql.ErrTxDone
	}
	t.ended = true
	return t.release("ROLLBACK")
}

// release runs stmt to end the transaction and hands the connection
// back. If stmt fails, the connection may still be inside the
// transaction, so it is closed instead of kept.
func (t *connTx) release(stmt string) error {
	_, err := t.conn.ExecContext(context.Background(), stmt)
	if err != nil {
		_ = t.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = t.conn.Close()
	return err
}
