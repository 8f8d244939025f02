package jobs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riversqlite"
)

// River on SQLite, woken by what it writes rather than by a clock.
//
// SQLite has no LISTEN/NOTIFY, so River's SQLite driver keeps its
// notifications (a job inserted, a leader resigning) as rows of
// river_notification, and its listener reads that table every 50 ms for
// as long as the process runs: twenty queries a second with nothing to
// find, about half of what an idle embedded server did (1.6–1.9 % of a
// CPU in all; docs/BENCHMARKS.md, "An idle embedded server").
//
// On SQLite spool is one process: the data directory is locked, and
// every notification is written by this process's River through the
// executors of its driver. So sqliteDriver's executors wake the listener
// when they write one, and the listener reads the table then, and
// otherwise once every listenerFallback. The wake comes as the row is
// written, inside a transaction that has not committed yet: the listener
// reads through the same pool, whose one connection that transaction
// holds, so its read runs after the commit and finds the row (or, after
// a rollback, finds nothing, as it should). A notification written some
// other way (River's job cancel writes its row itself) is read at the
// next wake or fallback; jobs themselves are also found by each queue's
// fetch poll (Config.PollInterval), whichever comes first, and by the
// wakes of localwake.go, which this listener delivers too.

// listenerFallback is how often the listener reads the notification
// table when nothing woke it, for the notifications no executor of this
// driver wrote.
const listenerFallback = 5 * time.Second

// notificationBatch is the most notifications one read of the table
// takes; a full batch is followed by another read at once.
const notificationBatch = 256

// sqliteDriver is River's SQLite driver whose executors wake its
// listener when they write a notification.
type sqliteDriver struct {
	*riversqlite.Driver
	db       *sql.DB
	written  *writes
	fallback time.Duration
	wakes    *wakes // this replica's own, which its listener delivers too (localwake.go)
}

// newSQLiteDriver returns River's SQLite driver over db, whose listener
// reads at least every fallback and delivers w's wakes. The waking
// listener needs db to have
// one connection, which spool's SQLite writer pool has
// (internal/database); over a pool of more, a read could run before the
// commit of the notification that woke it, so River's own polling
// listener serves instead.
func newSQLiteDriver(db *sql.DB, fallback time.Duration, w *wakes) riverdriver.Driver[*sql.Tx] {
	river := riversqlite.New(db)
	if db.Stats().MaxOpenConnections != 1 {
		return river
	}
	return &sqliteDriver{Driver: river, db: db, written: newWrites(), fallback: fallback, wakes: w}
}

func (d *sqliteDriver) GetExecutor() riverdriver.Executor {
	return &wakingExecutor{Executor: d.Driver.GetExecutor(), written: d.written}
}

func (d *sqliteDriver) UnwrapExecutor(tx *sql.Tx) riverdriver.ExecutorTx {
	return &wakingTx{ExecutorTx: d.Driver.UnwrapExecutor(tx), written: d.written}
}

// UnwrapTx returns the *sql.Tx under an executor of this driver's.
func (d *sqliteDriver) UnwrapTx(execTx riverdriver.ExecutorTx) *sql.Tx {
	if w, ok := execTx.(*wakingTx); ok {
		execTx = w.ExecutorTx
	}
	return d.Driver.UnwrapTx(execTx)
}

func (d *sqliteDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	if params.Schema != "" {
		// spool runs River in the database's main schema; the query
		// below knows no other.
		return &wakingListener{Listener: d.Driver.GetListener(params), wakes: d.wakes}
	}
	return &wakingListener{Listener: &sqliteListener{db: d.db, written: d.written, fallback: d.fallback}, wakes: d.wakes}
}

// wakingExecutor is an executor of River's SQLite driver that wakes the
// listener when it writes a notification, and whose transactions do too.
type wakingExecutor struct {
	riverdriver.Executor
	written *writes
}

func (e *wakingExecutor) Begin(ctx context.Context) (riverdriver.ExecutorTx, error) {
	return e.written.wrap(e.Executor.Begin(ctx))
}

func (e *wakingExecutor) NotifyMany(ctx context.Context, params *riverdriver.NotifyManyParams) error {
	return e.written.after(e.Executor.NotifyMany(ctx, params))
}

// wakingTx is wakingExecutor's transaction (or savepoint).
type wakingTx struct {
	riverdriver.ExecutorTx
	written *writes
}

func (t *wakingTx) Begin(ctx context.Context) (riverdriver.ExecutorTx, error) {
	return t.written.wrap(t.ExecutorTx.Begin(ctx))
}

func (t *wakingTx) NotifyMany(ctx context.Context, params *riverdriver.NotifyManyParams) error {
	return t.written.after(t.ExecutorTx.NotifyMany(ctx, params))
}

// writes tells of the notifications written: the channel it hands out
// is closed at the next one.
type writes struct {
	mu   sync.Mutex
	next chan struct{}
}

func newWrites() *writes { return &writes{next: make(chan struct{})} }

func (w *writes) add() {
	w.mu.Lock()
	close(w.next)
	w.next = make(chan struct{})
	w.mu.Unlock()
}

// since returns a channel closed at the next notification written.
func (w *writes) since() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// after counts a notification written, unless err says it was not.
func (w *writes) after(err error) error {
	if err == nil {
		w.add()
	}
	return err
}

// wrap returns tx, begun with err, as a transaction that counts the
// notifications it writes.
func (w *writes) wrap(tx riverdriver.ExecutorTx, err error) (riverdriver.ExecutorTx, error) {
	if err != nil {
		return nil, err
	}
	return &wakingTx{ExecutorTx: tx, written: w}, nil
}

// sqliteListener reads River's notification table when a notification
// was written since its last read, when its last read filled a batch,
// and otherwise every fallback. It keeps River's listener's contract: a
// topic's notifications written before Listen are not delivered, nor
// any written before Connect.
type sqliteListener struct {
	db       *sql.DB
	written  *writes
	fallback time.Duration

	mu        sync.Mutex
	connected bool
	// lastID is the last notification read. SQLite has one writer, so a
	// notification committed after the read has a higher id.
	lastID  int64
	topics  map[string]int64 // topic → the last id before Listen
	pending []notification
	// unread is closed once a notification is written after the last
	// read began, which that read may not have seen.
	unread   <-chan struct{}
	full     bool      // the last read filled its batch
	readNext time.Time // when the fallback reads again
}

type notification struct {
	id             int64
	topic, payload string
}

const (
	lastNotificationSQL = `SELECT coalesce(max(id), 0) FROM river_notification`
	notificationsSQL    = `SELECT id, topic, payload FROM river_notification
WHERE id > ? AND topic IN (SELECT value FROM json_each(?))
ORDER BY id LIMIT ?`
)

var errNotConnected = errors.New("jobs: the SQLite listener is not connected")

func (l *sqliteListener) Connect(ctx context.Context) error {
	var last int64
	if err := l.db.QueryRowContext(ctx, lastNotificationSQL).Scan(&last); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.connected {
		return errors.New("jobs: the SQLite listener is already connected")
	}
	l.connected, l.lastID, l.topics, l.pending = true, last, map[string]int64{}, nil
	l.unread = l.written.since()
	l.readNext = time.Now().Add(l.fallback)
	return nil
}

func (l *sqliteListener) Close(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.connected, l.topics, l.pending = false, nil, nil
	return nil
}

func (l *sqliteListener) Listen(ctx context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return errNotConnected
	}
	if _, ok := l.topics[topic]; ok {
		return nil
	}
	var last int64
	if err := l.db.QueryRowContext(ctx, lastNotificationSQL).Scan(&last); err != nil {
		return err
	}
	l.topics[topic] = max(l.lastID, last)
	return nil
}

func (l *sqliteListener) Unlisten(_ context.Context, topic string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return errNotConnected
	}
	delete(l.topics, topic)
	return nil
}

func (l *sqliteListener) Ping(ctx context.Context) error { return l.db.PingContext(ctx) }

func (l *sqliteListener) Schema() string { return "" }

// SetAfterConnectExec is for River's own driver tests; spool sets none.
func (l *sqliteListener) SetAfterConnectExec(string) {}

func (l *sqliteListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	for {
		n, due, unread, err := l.nextOrDue()
		if err != nil || n != nil {
			return n, err
		}
		if due {
			if err := l.readTable(ctx); err != nil {
				// River interrupts a wait by cancelling ctx, and takes
				// any other error for a broken connection; the driver's
				// error for a query cut short may not say it was ctx.
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				return nil, err
			}
			continue
		}
		l.mu.Lock()
		wait := time.Until(l.readNext)
		l.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-unread:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// nextOrDue returns the next pending notification of a topic listened
// to, or else whether the table is due a read, and the channel closed at
// the first write since the last read began.
func (l *sqliteListener) nextOrDue() (*riverdriver.Notification, bool, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return nil, false, nil, errNotConnected
	}
	for len(l.pending) > 0 {
		n := l.pending[0]
		l.pending = l.pending[1:]
		// Listen and Unlisten may come between a read and its delivery.
		if since, ok := l.topics[n.topic]; ok && n.id > since {
			return &riverdriver.Notification{Topic: n.topic, Payload: n.payload}, false, nil, nil
		}
	}
	due := l.full || !time.Now().Before(l.readNext)
	select {
	case <-l.unread:
		due = true
	default:
	}
	return nil, due, l.unread, nil
}

// readTable reads the notifications after lastID of the topics listened
// to into pending.
func (l *sqliteListener) readTable(ctx context.Context) error {
	unread := l.written.since() // before the query: a write after it is unread
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.connected {
		return errNotConnected
	}
	topics := make([]string, 0, len(l.topics))
	for t := range l.topics {
		topics = append(topics, t)
	}
	if len(topics) == 0 {
		l.unread, l.full, l.readNext = unread, false, time.Now().Add(l.fallback)
		return nil
	}
	list, err := json.Marshal(topics)
	if err != nil {
		return err
	}
	rows, err := l.db.QueryContext(ctx, notificationsSQL, l.lastID, list, notificationBatch)
	if err != nil {
		return err
	}
	defer rows.Close()
	var got []notification
	for rows.Next() {
		var n notification
		if err := rows.Scan(&n.id, &n.topic, &n.payload); err != nil {
			return err
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(got) > 0 {
		l.lastID = got[len(got)-1].id
	}
	l.pending = append(l.pending, got...)
	l.unread, l.full, l.readNext = unread, len(got) == notificationBatch, time.Now().Add(l.fallback)
	return nil
}
