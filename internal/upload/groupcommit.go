package upload

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"

	"github.com/spoolhq/spool/ent"
)

// groupCommit runs the chunk receipts that arrive while another is being
// committed in one transaction of their own, so one commit serves them
// all. On SQLite every request waits for its one
// connection anyway, and a receipt's commit (its WAL frames: two writes
// per page) was a quarter of the CPU of a small chunk PUT; receipts that
// queue behind a commit share the next one, and the pages they share
// (the chunk table's last page, an index's) are written once.
//
// There is no goroutine of its own: the first receipt to find no commit
// running leads; it takes every receipt queued, commits them, hands the
// lead to the first that queued meanwhile, then wakes the rest of its
// batch with their results. A receipt alone runs as a plain transaction,
// so an unhurried upload's receipt costs what it did (docs/DESIGN.md,
// "What a receipt costs the database").
type groupCommit struct {
	db *ent.Client

	mu      sync.Mutex
	queue   []*groupReceipt
	leading bool
}

// groupReceipt is one transaction's work waiting in a groupCommit.
type groupReceipt struct {
	ctx context.Context
	fn  func(tx *ent.Tx) error
	err error
	// wake says true when the receipt is to lead the next batch, false
	// when its batch is committed (or failed) and err is set.
	wake chan bool
}

// run runs fn in a transaction, shared with the receipts queued with it,
// and returns fn's error or the transaction's. fn's writes are kept only
// if it returns nil and the transaction commits.
func (g *groupCommit) run(ctx context.Context, fn func(tx *ent.Tx) error) error {
	r := &groupReceipt{ctx: ctx, fn: fn, wake: make(chan bool, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	if g.leading {
		g.mu.Unlock()
		if lead := <-r.wake; !lead {
			return r.err
		}
		g.mu.Lock()
	}
	g.leading = true
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()

	g.commit(batch)

	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].wake <- true
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	for _, b := range batch {
		if b != r {
			b.wake <- false
		}
	}
	return r.err
}

// commit runs a batch and sets each receipt's err. The batch's receipts
// run one after another in one transaction, each costing its own
// statements and no more (no savepoints). If one fails, nothing of the
// batch is kept: the transaction is rolled back and each receipt runs
// again in a transaction of its own, so the failure is that receipt's
// alone. Receipts fail rarely (a chunk's row moved by another request
// meanwhile, an upload stopped while its chunk arrived).
func (g *groupCommit) commit(batch []*groupReceipt) {
	if len(batch) == 1 {
		batch[0].err = runTx(batch[0].ctx, g.db, batch[0].fn)
		return
	}
	// Receipts are recorded even when their client has hung up (receive),
	// so the leader's cancellation must not end the others' transaction.
	ctx := context.WithoutCancel(batch[0].ctx)
	tx, err := g.db.Tx(ctx)
	if err != nil {
		g.alone(batch)
		return
	}
	for _, b := range batch {
		if err := recovered(func() error { return b.fn(tx) }); err != nil {
			_ = tx.Rollback()
			g.alone(batch)
			return
		}
	}
	if err := tx.Commit(); err != nil {
		g.alone(batch)
	}
}

// alone runs each receipt of a batch that was not kept in a transaction
// of its own.
func (g *groupCommit) alone(batch []*groupReceipt) {
	for _, b := range batch {
		b.err = runTx(b.ctx, g.db, b.fn)
	}
}

// runTx runs fn in a transaction of its own and commits it.
func runTx(ctx context.Context, db *ent.Client, fn func(tx *ent.Tx) error) error {
	tx, err := db.Tx(ctx)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	if err := recovered(func() error { return fn(tx) }); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// recovered runs a transaction's work and returns a panic in it as an
// error, with its stack (logged, never shown: INTERNAL), so that its
// caller rolls the transaction back. Left open, it would hold its
// connection, on SQLite the one that writes, and every write after it
// would wait; in a group commit the panic would also end the leader
// with the lead held, and every receipt after it would queue for ever.
func recovered(work func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("a transaction's work panicked: %v\n%s", v, debug.Stack())
		}
	}()
	return work()
}
