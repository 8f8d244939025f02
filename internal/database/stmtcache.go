package database

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
)

// The embedded SQLite prepares each statement once per connection.
//
// ent hands SQL text to database/sql, and database/sql passes it to the
// driver's ExecContext or QueryContext; modernc.org/sqlite (v1.61) then
// prepares, steps and finalizes the statement every time. Neither offers a
// statement cache, so stmtCacheConnector puts one between them: each
// connection keeps its most recently used statements prepared, keyed by
// their text, and runs them again with new arguments. modernc's prepared
// statements are reusable: an Exec resets the statement when it is done,
// and the Rows of a Query reset it (rather than finalize it) when closed.
//
// What is never served from the cache:
//   - text holding more than one statement (goose's migrations, scripts):
//     anything with a ';' other than a trailing one, outside comments and
//     quotes, goes straight to the driver, which runs scripts statement
//     by statement;
//   - texts longer than maxCachedQuery (huge multi-row inserts, each one
//     different);
//   - a statement whose Rows are still open: SQLite cannot bind or step a
//     statement that is part-way through its rows, so a second use of the
//     same text meanwhile (a nested query) goes to the driver, which
//     prepares a statement of its own for it.
//
// A statement whose LIMIT is a parameter is kept once for each value
// bound there (stmtKey). SQLite plans some such statements for the value
// (River's fetch of jobs, `UPDATE … WHERE id IN (SELECT … LIMIT ?5)`),
// and then prepares them again whenever it differs from the last run's:
// River's queues fetch as many jobs as they have free workers, so one
// prepared fetch went back and forth between its queues' counts and was
// prepared again at nearly every run (docs/BENCHMARKS.md, "River's fetch
// kept prepared").
//
// A statement that fails is dropped and prepared afresh on its next use,
// so no error can leave a broken statement in the cache. A schema change
// (a migration) needs nothing more: statements are prepared with
// sqlite3_prepare_v2, and SQLite prepares them again by itself when the
// schema they were planned against has changed (SQLITE_SCHEMA never
// reaches the caller).
//
// database/sql uses a driver connection from one goroutine at a time
// (Rows.Close included), so a connection's cache needs no lock.

// stmtCacheSize is how many statements one SQLite connection keeps
// prepared. spool's queries, ent's and River's together, are well under
// it; a statement costs a few KiB of SQLite memory.
const stmtCacheSize = 256

// maxCachedQuery is the longest SQL text the cache keeps.
const maxCachedQuery = 16 << 10

// stmtCacheStats counts what the statement cache did, over all of a
// connector's connections.
type stmtCacheStats struct {
	prepares atomic.Int64 // statements prepared into the cache
	hits     atomic.Int64 // executions served by a cached statement
	bypasses atomic.Int64 // executions passed to the driver uncached
}

// stmtCacheConnector opens connections of base whose ExecContext and
// QueryContext keep their statements prepared.
type stmtCacheConnector struct {
	base  driver.Connector
	size  int
	stats *stmtCacheStats
}

func newStmtCacheConnector(base driver.Connector, size int) *stmtCacheConnector {
	return &stmtCacheConnector{base: base, size: size, stats: new(stmtCacheStats)}
}

// innerConn is what stmtCacheConn needs of the driver's connection;
// modernc's connection has all of it.
type innerConn interface {
	driver.Conn
	driver.ConnPrepareContext
	driver.ConnBeginTx
	driver.ExecerContext
	driver.QueryerContext
}

// Connect opens a connection of the underlying driver.
func (c *stmtCacheConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	inner, ok := conn.(innerConn)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("database: the SQLite driver's connection lacks the context methods the statement cache needs")
	}
	return &stmtCacheConn{
		inner:  inner,
		size:   c.size,
		stats:  c.stats,
		bySQL:  make(map[stmtKey]*list.Element),
		limits: make(map[string][]int),
	}, nil
}

// Driver returns the underlying driver.
func (c *stmtCacheConnector) Driver() driver.Driver { return c.base.Driver() }

// cachedStmt is one prepared statement of a connection.
type cachedStmt struct {
	key  stmtKey
	stmt driver.Stmt
	exec driver.StmtExecContext
	qry  driver.StmtQueryContext
	// busy is set while the statement's Rows are open.
	busy bool
	// dropped is set once the statement left the cache while busy; the
	// closing Rows then close it.
	dropped bool
}

// stmtCacheConn is a driver connection with a statement cache: an LRU
// list of cachedStmt (the most recently used first) and its index by
// text.
type stmtCacheConn struct {
	inner innerConn
	size  int
	stats *stmtCacheStats
	lru   list.List
	bySQL map[stmtKey]*list.Element
	// limits remembers the parameters bound to each text's LIMITs
	// (limitParams), for texts that have a LIMIT.
	limits map[string][]int
}

var (
	_ driver.Conn               = (*stmtCacheConn)(nil)
	_ driver.ConnPrepareContext = (*stmtCacheConn)(nil)
	_ driver.ConnBeginTx        = (*stmtCacheConn)(nil)
	_ driver.ExecerContext      = (*stmtCacheConn)(nil)
	_ driver.QueryerContext     = (*stmtCacheConn)(nil)
	_ driver.Pinger             = (*stmtCacheConn)(nil)
	_ driver.SessionResetter    = (*stmtCacheConn)(nil)
	_ driver.Validator          = (*stmtCacheConn)(nil)
	_ driver.NamedValueChecker  = (*stmtCacheConn)(nil)
)

// stmtKey is what a cached statement is found by: its text and the
// values bound to the parameters of its LIMITs, if any.
type stmtKey struct {
	sql    string
	limits string
}

// keyOf returns the cache key of query run with args.
func (c *stmtCacheConn) keyOf(query string, args []driver.NamedValue) stmtKey {
	// Every statement passes here, so texts without a LIMIT are told
	// apart by one search. ent and River write LIMIT in capitals; a text
	// that spells it otherwise keeps one statement for all its values.
	if !strings.Contains(query, "LIMIT") {
		return stmtKey{sql: query}
	}
	params, ok := c.limits[query]
	if !ok {
		if len(c.limits) >= 4*c.size {
			clear(c.limits) // texts come and go with the cache's
		}
		params = limitParams(query)
		c.limits[query] = params
	}
	limits := ""
	for i, p := range params {
		// modernc binds parameter p to args[p-1] unless an argument is
		// named; then it is left to one statement for all values.
		if p > len(args) || args[p-1].Name != "" {
			return stmtKey{sql: query}
		}
		v, ok := args[p-1].Value.(int64)
		if !ok {
			return stmtKey{sql: query}
		}
		if i > 0 {
			limits += ","
		}
		limits += strconv.FormatInt(v, 10)
	}
	return stmtKey{sql: query, limits: limits}
}

// limitParams returns the indexes of the parameters that follow a LIMIT
// keyword in query (`LIMIT ?`, `LIMIT ?5`, `LIMIT :n`), numbered as
// SQLite numbers them: ?NNN is NNN, a bare ? one more than the largest
// so far, and a name the number of its first use. Comments, strings and
// quoted names are skipped.
func limitParams(query string) []int {
	var (
		limits     []int
		last       int
		names      map[string]int
		afterLimit bool
	)
	wordEnd := func(i int) int {
		for i < len(query) && isWordByte(query[i]) {
			i++
		}
		return i
	}
	for i := 0; i < len(query); i++ {
		c := query[i]
		if isSpace(c) {
			continue
		}
		if end, ok := skipComment(query, i); ok {
			i = end
			continue
		}
		param := 0
		switch end, quoted := skipQuoted(query, i); {
		case quoted:
			i = end
		case c == '?':
			j := i + 1
			for j < len(query) && query[j] >= '0' && query[j] <= '9' {
				j++
			}
			param = last + 1
			if j > i+1 {
				param, _ = strconv.Atoi(query[i+1 : j])
			}
			i = j - 1
		case (c == ':' || c == '@' || c == '$') && i+1 < len(query) && isWordByte(query[i+1]):
			j := wordEnd(i + 1)
			name := query[i+1 : j]
			var seen bool
			if param, seen = names[name]; !seen {
				if names == nil {
					names = map[string]int{}
				}
				param = last + 1
				names[name] = param
			}
			i = j - 1
		case isWordByte(c):
			j := wordEnd(i)
			afterLimit = strings.EqualFold(query[i:j], "LIMIT")
			i = j - 1
			continue
		}
		if param > 0 {
			last = max(last, param)
			if afterLimit {
				limits = append(limits, param)
			}
		}
		afterLimit = false
	}
	return limits
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// skipComment returns, when a comment starts at query[i], the index of
// its last byte and true. An unterminated one runs to the end.
func skipComment(query string, i int) (int, bool) {
	switch {
	case strings.HasPrefix(query[i:], "--"):
		if j := strings.IndexByte(query[i:], '\n'); j >= 0 {
			return i + j, true
		}
		return len(query) - 1, true
	case strings.HasPrefix(query[i:], "/*"):
		if j := strings.Index(query[i+2:], "*/"); j >= 0 {
			return i + j + 3, true
		}
		return len(query) - 1, true
	}
	return i, false
}

// skipQuoted returns, when a string or a quoted name starts at query[i],
// the index of its closing quote and true; a doubled quote inside reads
// as two quoted parts, which is the same. An unterminated one runs to
// the end: SQLite's error, not the cache's.
func skipQuoted(query string, i int) (int, bool) {
	closing := query[i]
	switch closing {
	case '[':
		closing = ']'
	case '\'', '"', '`':
	default:
		return i, false
	}
	if j := strings.IndexByte(query[i+1:], closing); j >= 0 {
		return i + j + 1, true
	}
	return len(query) - 1, true
}

// cacheable reports whether query may be kept prepared: one statement of
// a bounded length.
func cacheable(query string) bool {
	return len(query) <= maxCachedQuery && oneStatement(query)
}

// oneStatement reports whether query holds one statement: no ';' but one
// that ends it, comments and blanks aside. A ';' inside a comment, a
// string or a quoted name ends nothing: River's completion of a job, run
// once a job, has one in a comment, and was prepared anew every time
// when any ';' counted (docs/BENCHMARKS.md, "Small files: events from
// the rows").
func oneStatement(query string) bool {
	if strings.IndexByte(query, ';') < 0 {
		return true // most statements: no scan
	}
	ended := false
	for i := 0; i < len(query); i++ {
		if isSpace(query[i]) {
			continue
		}
		if end, ok := skipComment(query, i); ok {
			i = end
			continue
		}
		switch end, quoted := skipQuoted(query, i); {
		case ended:
			return false // text after the end: a second statement (or ";;")
		case query[i] == ';':
			ended = true
		case quoted:
			i = end
		}
	}
	return true
}

// lookup returns the cached statement for query run with args, preparing
// and caching it if there is none. It returns nil, nil when query is not
// to be served from the cache: not cacheable, or its statement busy.
func (c *stmtCacheConn) lookup(ctx context.Context, query string, args []driver.NamedValue) (*cachedStmt, error) {
	if c.size <= 0 || !cacheable(query) {
		return nil, nil
	}
	key := c.keyOf(query, args)
	if el, ok := c.bySQL[key]; ok {
		cs := el.Value.(*cachedStmt)
		if cs.busy {
			return nil, nil
		}
		c.lru.MoveToFront(el)
		c.stats.hits.Add(1)
		return cs, nil
	}
	st, err := c.inner.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	exec, okE := st.(driver.StmtExecContext)
	qry, okQ := st.(driver.StmtQueryContext)
	if !okE || !okQ {
		_ = st.Close()
		return nil, nil
	}
	c.stats.prepares.Add(1)
	cs := &cachedStmt{key: key, stmt: st, exec: exec, qry: qry}
	c.bySQL[key] = c.lru.PushFront(cs)
	for c.lru.Len() > c.size {
		c.drop(c.lru.Back())
	}
	return cs, nil
}

// drop takes a statement out of the cache and closes it, or leaves the
// closing to its open Rows.
func (c *stmtCacheConn) drop(el *list.Element) {
	cs := c.lru.Remove(el).(*cachedStmt)
	delete(c.bySQL, cs.key)
	if cs.busy {
		cs.dropped = true
		return
	}
	_ = cs.stmt.Close()
}

// forget drops cs if it is still the cached statement for its text.
func (c *stmtCacheConn) forget(cs *cachedStmt) {
	if el, ok := c.bySQL[cs.key]; ok && el.Value.(*cachedStmt) == cs {
		c.drop(el)
	}
}

// ExecContext runs query with a cached statement, or through the driver.
func (c *stmtCacheConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.lookup(ctx, query, args)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		c.stats.bypasses.Add(1)
		return c.inner.ExecContext(ctx, query, args)
	}
	res, err := cs.exec.ExecContext(ctx, args)
	if err != nil {
		c.forget(cs)
	}
	return res, err
}

// QueryContext runs query with a cached statement, or through the driver.
// The statement is busy until the returned Rows are closed.
func (c *stmtCacheConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs, err := c.lookup(ctx, query, args)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		c.stats.bypasses.Add(1)
		return c.inner.QueryContext(ctx, query, args)
	}
	rows, err := cs.qry.QueryContext(ctx, args)
	if err != nil {
		c.forget(cs)
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, conn: c, cs: cs}, nil
}

// Prepare prepares a statement the caller owns, outside the cache.
func (c *stmtCacheConn) Prepare(query string) (driver.Stmt, error) {
	return c.inner.PrepareContext(context.Background(), query)
}

// PrepareContext prepares a statement the caller owns, outside the cache
// (database/sql closes it when its *sql.Stmt is closed).
func (c *stmtCacheConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.inner.PrepareContext(ctx, query)
}

// Begin begins a transaction.
//
// Deprecated: database/sql calls BeginTx.
func (c *stmtCacheConn) Begin() (driver.Tx, error) {
	return c.inner.BeginTx(context.Background(), driver.TxOptions{})
}

// BeginTx begins a transaction on the connection; its statements go
// through ExecContext and QueryContext, hence the cache, too.
func (c *stmtCacheConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.inner.BeginTx(ctx, opts)
}

// Close closes the cached statements, then the connection.
func (c *stmtCacheConn) Close() error {
	for el := c.lru.Front(); el != nil; el = c.lru.Front() {
		cs := c.lru.Remove(el).(*cachedStmt)
		_ = cs.stmt.Close()
	}
	clear(c.bySQL)
	return c.inner.Close()
}

// Ping passes to the driver's connection.
func (c *stmtCacheConn) Ping(ctx context.Context) error {
	if p, ok := c.inner.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// ResetSession passes to the driver's connection.
func (c *stmtCacheConn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

// IsValid passes to the driver's connection.
func (c *stmtCacheConn) IsValid() bool {
	if v, ok := c.inner.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

// CheckNamedValue passes to the driver's connection; driver.ErrSkip,
// when it has no checker, makes database/sql convert as usual.
func (c *stmtCacheConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.inner.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// cachedRows are the Rows of a cached statement; closing them frees the
// statement for its next use. They pass on the column type methods of
// modernc's rows, which database/sql's ColumnTypes reads.
type cachedRows struct {
	driver.Rows
	conn   *stmtCacheConn
	cs     *cachedStmt
	closed bool
}

func (r *cachedRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	err := r.Rows.Close()
	r.cs.busy = false
	switch {
	case r.cs.dropped:
		_ = r.cs.stmt.Close()
	case err != nil:
		r.conn.forget(r.cs)
	}
	return err
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeLength(i int) (int64, bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeLength); ok {
		return t.ColumnTypeLength(i)
	}
	return 0, false
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}

func (r *cachedRows) ColumnTypePrecisionScale(i int) (precision, scale int64, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypePrecisionScale); ok {
		return t.ColumnTypePrecisionScale(i)
	}
	return 0, 0, false
}
