package upload

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/user"
)

// TestGroupCommit: receipts that queue while one commits share the next
// transaction; one that fails, or panics, is undone alone, the others
// are kept.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	g := &groupCommit{db: db.Client}
	refused := errors.New("refused")

	// round runs n receipts: receipt 0 leads alone and holds its
	// transaction open until the others are queued behind it. Each
	// creates the user prefix-i; the one numbered fail then refuses, or
	// panics if panics is set. It returns the transaction each receipt
	// ran in last, and its error.
	round := func(prefix string, n, fail int, panics bool) ([]*ent.Tx, []error) {
		txs, errs := make([]*ent.Tx, n), make([]error, n)
		var wg sync.WaitGroup
		run := func(i int) {
			defer wg.Done()
			errs[i] = g.run(ctx, func(tx *ent.Tx) error {
				txs[i] = tx
				if i == 0 {
					if err := waitFor(func() bool { return len(g.queue) == n-1 }, &g.mu); err != nil {
						return err
					}
				}
				if _, err := tx.User.Create().SetSubject(fmt.Sprint(prefix, i)).SetQuotaBytes(1).Save(ctx); err != nil {
					return err
				}
				if i == fail && panics {
					panic("a bug in a receipt") // written, then a panic: undone
				}
				if i == fail {
					return refused // written, then refused: undone
				}
				return nil
			})
		}
		wg.Add(1)
		go run(0)
		if err := waitFor(func() bool { return g.leading }, &g.mu); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < n; i++ {
			wg.Add(1)
			go run(i)
		}
		wg.Wait()
		return txs, errs
	}
	kept := func(prefix string) []string {
		return db.Client.User.Query().Where(user.SubjectHasPrefix(prefix)).Order(user.BySubject()).
			Select(user.FieldSubject).StringsX(ctx)
	}

	txs, errs := round("a-", 6, -1, false)
	for i, err := range errs {
		if err != nil {
			t.Errorf("receipt %d: %v", i, err)
		}
	}
	for i := 2; i < len(txs); i++ {
		if txs[i] != txs[1] {
			t.Errorf("receipt %d ran in another transaction than receipt 1: the queued receipts were not committed together", i)
		}
	}
	if txs[0] == txs[1] {
		t.Error("receipt 1 ran in the transaction receipt 0 held open")
	}
	if got, want := kept("a-"), []string{"a-0", "a-1", "a-2", "a-3", "a-4", "a-5"}; !slices.Equal(got, want) {
		t.Errorf("users kept: %v, want %v", got, want)
	}

	_, errs = round("b-", 6, 3, false)
	for i, err := range errs {
		if want := error(nil); i == 3 && !errors.Is(err, refused) || i != 3 && err != want {
			t.Errorf("receipt %d: %v", i, err)
		}
	}
	if got, want := kept("b-"), []string{"b-0", "b-1", "b-2", "b-4", "b-5"}; !slices.Equal(got, want) {
		t.Errorf("users kept: %v, want %v", got, want)
	}

	// A receipt that panics (a bug) fails alone, with the panic in its
	// error; the others are kept, the lead is handed on, and the writing
	// connection is free for the next round. Left to run on, the panic
	// ended the leader with its transaction open and the lead held.
	_, errs = round("c-", 6, 2, true)
	for i, err := range errs {
		if i == 2 && (err == nil || !strings.Contains(err.Error(), "a bug in a receipt")) || i != 2 && err != nil {
			t.Errorf("receipt %d: %v", i, err)
		}
	}
	if got, want := kept("c-"), []string{"c-0", "c-1", "c-3", "c-4", "c-5"}; !slices.Equal(got, want) {
		t.Errorf("users kept: %v, want %v", got, want)
	}
	if _, errs = round("d-", 2, -1, false); errs[0] != nil || errs[1] != nil {
		t.Errorf("the round after the panic: %v", errs)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leading || len(g.queue) != 0 {
		t.Errorf("after the last batch: leading %v, %d queued; want false, 0", g.leading, len(g.queue))
	}
}

// waitFor polls cond under mu until it holds; a hang guard, not a timing
// assertion.
func waitFor(cond func() bool, mu *sync.Mutex) error {
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		ok := cond()
		mu.Unlock()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("gave up waiting for the receipts to queue")
		}
	}
}

// txEnds records what TxDone was told; it enqueues nothing.
type txEnds struct {
	mu    sync.Mutex
	ended []bool
}

func (q *txEnds) EnqueueProcessing(context.Context, *sql.Tx, string) error { return nil }
func (q *txEnds) EnqueuePurge(context.Context, *sql.Tx, string) error      { return nil }
func (q *txEnds) TxDone(_ *sql.Tx, committed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ended = append(q.ended, committed)
}

// A panic in the work of withJobTx (a bug) rolls its transaction back
// and tells the queue so: the panic is the caller's error, what it wrote
// is undone, and the writing connection is free for the next
// transaction, which commits.
func TestWithJobTxRollsBackAPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	q := &txEnds{}
	s := &Service{db: db.Client, queue: q}
	create := func(tx *ent.Tx, subject string) error {
		_, err := tx.User.Create().SetSubject(subject).SetQuotaBytes(1).Save(ctx)
		return err
	}
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("withJobTx let the panic through (transaction left open): %v", v)
			}
		}()
		return s.withJobTx(ctx, func(tx *ent.Tx, _ jobTx) error {
			if err := create(tx, "panicked"); err != nil {
				return err
			}
			panic("a bug in a transaction")
		})
	}()
	if err != nil && strings.HasPrefix(err.Error(), "withJobTx let") {
		t.Fatal(err)
	}
	if err == nil || !strings.Contains(err.Error(), "a bug in a transaction") {
		t.Fatalf("withJobTx whose work panicked returned %v, want the panic", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.withJobTx(ctx, func(tx *ent.Tx, _ jobTx) error { return create(tx, "next") }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the transaction after the panic: %v", err)
		}
	case <-time.After(20 * time.Second): // a hang guard
		t.Fatal("the transaction after the panic did not end: the panicked one holds the connection")
	}
	if got := db.Client.User.Query().Where(user.SubjectIn("panicked", "next")).Select(user.FieldSubject).StringsX(ctx); !slices.Equal(got, []string{"next"}) {
		t.Errorf("users kept: %v, want [next]", got)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if !slices.Equal(q.ended, []bool{false, true}) {
		t.Errorf("TxDone was told %v, want [false true]", q.ended)
	}
}
