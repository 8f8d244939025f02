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
package sqltx

import (
	"context"
	"database/sql"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
)

// Driver is ent's SQL driver recording the *sql.Tx of the transactions
// it begins for a context with a Slot.
type Driver struct {
	*entsql.Driver
}

var _ dialect.Driver = (*Driver)(nil)

// Wrap returns drv recording transactions into slots.
func Wrap(drv *entsql.Driver) *Driver { return &Driver{Driver: drv} }

// Tx begins a transaction (ent's Client.Tx calls this).
func (d *Driver) Tx(ctx context.Context) (dialect.Tx, error) { return d.BeginTx(ctx, nil) }

// BeginTx begins a transaction with options (ent's Client.BeginTx calls
// this) and records its *sql.Tx in the context's slot, if any.
func (d *Driver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	if s, ok := ctx.Value(slotKey{}).(*Slot); ok {
		if t, ok := tx.(*entsql.Tx); ok {
			s.tx, _ = t.Tx.(*sql.Tx)
		}
	}
	return tx, nil
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
