package upload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spoolhq/spool/ent"
	"github.com/spoolhq/spool/ent/user"
)

// TestGroupCommit: receipts that queue while one commits share the next
// transaction; one that fails is undone alone, the others are kept.
func TestGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openSQLite(t)
	g := &groupCommit{db: db.Client}
	refused := errors.New("refused")

	// round runs n receipts: receipt 0 leads alone and holds its
	// transaction open until the others are queued behind it. Each
	// creates the user prefix-i; the one numbered fail then refuses. It
	// returns the transaction each receipt ran in last, and its error.
	round := func(prefix string, n, fail int) ([]*ent.Tx, []error) {
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

	txs, errs := round("a-", 6, -1)
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

	_, errs = round("b-", 6, 3)
	for i, err := range errs {
		if want := error(nil); i == 3 && !errors.Is(err, refused) || i != 3 && err != want {
			t.Errorf("receipt %d: %v", i, err)
		}
	}
	if got, want := kept("b-"), []string{"b-0", "b-1", "b-2", "b-4", "b-5"}; !slices.Equal(got, want) {
		t.Errorf("users kept: %v, want %v", got, want)
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
