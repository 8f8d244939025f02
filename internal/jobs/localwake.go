package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
)

// This replica's own jobs, taken as the transaction that inserted them
// commits.
//
// River tells a queue of a job inserted with a transaction by an insert
// notification written in that transaction, but at most one a queue
// every 100 ms (its client-wide FetchCooldown, which on PostgreSQL
// spaces the notifications that wake every replica). A job inserted
// sooner after another waits for a fetch that follows a job finishing
// while its queue was full, or else for the poll, once a second: in one
// run, 37 of 40 photos sent by one `spool upload` were READY about a
// second after their complete (docs/BENCHMARKS.md, "Jobs taken as their
// transaction commits"). The replica that inserted a job is told when
// its transaction ends (upload.Queue.TxDone), so it wakes its own queue
// then: an insert notification its listener delivers to River without
// writing anything, that no other replica hears.

// insertTopic is River's topic of insert notifications, whose payload
// names the queue (riverqueue/river/internal/notifier).
const insertTopic = "river_insert"

// wakes are the queues this replica's listener is to wake: those of jobs
// inserted by a transaction that has committed, or without one.
type wakes struct {
	mu sync.Mutex
	// pending are the queues of jobs inserted by transactions still open.
	pending map[*sql.Tx][]string
	// ready are the queues to wake, each once.
	ready []string
	// interrupt cuts short the listener's wait for River's
	// notifications, while it waits.
	interrupt context.CancelFunc
}

func newWakes() *wakes { return &wakes{pending: map[*sql.Tx][]string{}} }

// inserted records a job inserted into queue by tx; a nil tx has
// committed already.
func (w *wakes) inserted(tx *sql.Tx, queue string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if tx == nil {
		w.wake(queue)
		return
	}
	if !slices.Contains(w.pending[tx], queue) {
		w.pending[tx] = append(w.pending[tx], queue)
	}
}

// ended wakes the queues of the jobs tx inserted if it committed, and
// forgets them either way.
func (w *wakes) ended(tx *sql.Tx, committed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	queues := w.pending[tx]
	delete(w.pending, tx)
	if committed {
		for _, q := range queues {
			w.wake(q)
		}
	}
}

// wake adds queue to ready and interrupts the listener's wait; w.mu is
// held.
func (w *wakes) wake(queue string) {
	if !slices.Contains(w.ready, queue) {
		w.ready = append(w.ready, queue)
	}
	if w.interrupt != nil {
		w.interrupt()
		w.interrupt = nil
	}
}

// next takes a queue to wake if there is one; else it keeps interrupt,
// to call at the next wake until waited.
func (w *wakes) next(interrupt context.CancelFunc) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ready) > 0 {
		q := w.ready[0]
		w.ready = w.ready[1:]
		return q, true
	}
	w.interrupt = interrupt
	return "", false
}

// waited drops the interrupt next kept: the wait it would cut is over.
func (w *wakes) waited() {
	w.mu.Lock()
	w.interrupt = nil
	w.mu.Unlock()
}

// wakingListener is River's listener that also delivers this replica's
// wakes, as insert notifications, while River listens to them.
type wakingListener struct {
	riverdriver.Listener
	wakes *wakes

	mu      sync.Mutex
	inserts bool // River listens to insertTopic
}

func (l *wakingListener) Listen(ctx context.Context, topic string) error {
	if err := l.Listener.Listen(ctx, topic); err != nil {
		return err
	}
	l.setInserts(topic, true)
	return nil
}

func (l *wakingListener) Unlisten(ctx context.Context, topic string) error {
	l.setInserts(topic, false)
	return l.Listener.Unlisten(ctx, topic)
}

func (l *wakingListener) Close(ctx context.Context) error {
	l.setInserts(insertTopic, false)
	return l.Listener.Close(ctx)
}

func (l *wakingListener) setInserts(topic string, on bool) {
	if topic == insertTopic {
		l.mu.Lock()
		l.inserts = on
		l.mu.Unlock()
	}
}

// WaitForNotification returns a wake at once if one is ready, and
// otherwise waits for River's next notification, cut short by a wake.
// River interrupts a wait by cancelling ctx; that still returns ctx's
// error.
func (l *wakingListener) WaitForNotification(ctx context.Context) (*riverdriver.Notification, error) {
	for {
		waitCtx, cancel := context.WithCancel(ctx)
		if queue, ok := l.wakes.next(cancel); ok {
			cancel()
			l.mu.Lock()
			inserts := l.inserts
			l.mu.Unlock()
			if !inserts {
				continue // no producer hears it; each fetches as it starts
			}
			return &riverdriver.Notification{Topic: insertTopic, Payload: fmt.Sprintf(`{"queue":%q}`, queue)}, nil
		}
		n, err := l.Listener.WaitForNotification(waitCtx)
		// Read before cancel below: a wait that ended on its own (a lost
		// connection's error) goes to River, which connects again; taken
		// for a wake's cut, it was begun again on the closed connection,
		// and again, until River's ping 5 s on.
		woken := waitCtx.Err() != nil
		l.wakes.waited()
		cancel()
		if err != nil && ctx.Err() == nil && woken {
			continue // a wake cut the wait short
		}
		return n, err
	}
}

// pgDriver is River's database/sql driver for PostgreSQL with a pgx
// listener, whose listener delivers this replica's wakes too.
type pgDriver struct {
	*riverdatabasesql.Driver
	wakes *wakes
}

func (d *pgDriver) GetListener(params *riverdriver.GetListenenerParams) riverdriver.Listener {
	return &wakingListener{Listener: d.Driver.GetListener(params), wakes: d.wakes}
}

// queueOf is the queue River puts a job of args in.
func queueOf(args river.JobArgs) string {
	if a, ok := args.(river.JobArgsWithInsertOpts); ok && a.InsertOpts().Queue != "" {
		return a.InsertOpts().Queue
	}
	return river.QueueDefault
}
