// Package ratelimit owns spool's request budgets: per-key rate limits
// (GCRA, the token bucket's arithmetic without a refill timer) held in
// process or, through an engine such as ratelimit/redisrate, shared by
// every replica; and Slots, which bound how many things a key holds at
// once (chunk PUTs of one upload, websockets of one user). It knows
// nothing of uploads or users: callers choose the keys.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Rate is a token bucket: Events tokens come back every Per, and the
// bucket holds at most Burst, so Burst requests may arrive at once after
// a quiet spell and Events/Per is the sustained rate.
type Rate struct {
	Events int
	Per    time.Duration
	Burst  int
}

// Valid reports an error if r cannot be enforced: a rate or burst that
// is not positive.
func (r Rate) Valid() error {
	switch {
	case r.Events <= 0 || r.Per <= 0:
		return fmt.Errorf("rate %s: want a positive number of requests per a positive period", r)
	case r.Burst <= 0:
		return fmt.Errorf("rate %s: the burst must be positive", r)
	}
	return nil
}

// interval is the time one token takes to come back.
func (r Rate) interval() time.Duration { return r.Per / time.Duration(r.Events) }

// String writes r as ParseRate reads it, with its burst.
func (r Rate) String() string {
	return fmt.Sprintf("%d/%s (burst %d)", r.Events, formatPer(r.Per), r.Burst)
}

func formatPer(d time.Duration) string {
	switch d {
	case time.Second:
		return "s"
	case time.Minute:
		return "m"
	case time.Hour:
		return "h"
	}
	return d.String()
}

// ParseRate reads "N/s", "N/m", "N/h" or "N/DURATION" (such as 5/10s):
// N requests per period. It returns the events and the period; the burst
// is set apart.
func ParseRate(s string) (events int, per time.Duration, err error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not a rate: want N/s, N/m, N/h or N/DURATION (such as 20/s)", s)
	}
	events, err = strconv.Atoi(strings.TrimSpace(num))
	if err != nil || events <= 0 {
		return 0, 0, fmt.Errorf("%q is not a rate: the number of requests must be a positive integer", s)
	}
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = time.ParseDuration(unit)
		if err != nil || per <= 0 {
			return 0, 0, fmt.Errorf("%q is not a rate: the period must be s, m, h or a positive duration", s)
		}
	}
	if per/time.Duration(events) <= 0 {
		return 0, 0, fmt.Errorf("%q is more than one request per nanosecond", s)
	}
	return events, per, nil
}

// Limiter takes one request from a key's budget.
type Limiter interface {
	// Allow takes one token from key's bucket. It returns 0 if the
	// request may go on, or how long until it would be allowed. An error
	// means the budget could not be read (its engine is down); the
	// request was neither counted nor refused.
	Allow(ctx context.Context, key string) (retryAfter time.Duration, err error)
}

// Memory is a Limiter held in this process: replicas do not share it. It
// keeps the state of at most a fixed number of keys, the least recently
// used giving way; a key forgotten so starts again with a full bucket,
// which is what a key idle for Burst intervals has anyway.
type Memory struct {
	rate Rate
	now  func() time.Time
	mu   sync.Mutex
	// tat maps a key to its theoretical arrival time (GCRA): when its
	// bucket will be full again.
	tat *simplelru.LRU[string, time.Time]
}

var _ Limiter = (*Memory)(nil)

// DefaultMemoryKeys bounds a Memory's keys when NewMemory is given none:
// an entry is about 100 bytes.
const DefaultMemoryKeys = 100_000

// NewMemory returns an in-process Limiter enforcing rate for up to keys
// keys at once (DefaultMemoryKeys if keys <= 0).
func NewMemory(rate Rate, keys int) (*Memory, error) {
	if err := rate.Valid(); err != nil {
		return nil, err
	}
	if keys <= 0 {
		keys = DefaultMemoryKeys
	}
	tat, err := simplelru.NewLRU[string, time.Time](keys, nil)
	if err != nil {
		return nil, err
	}
	return &Memory{rate: rate, now: time.Now, tat: tat}, nil
}

// Allow implements Limiter; it never fails.
func (m *Memory) Allow(_ context.Context, key string) (time.Duration, error) {
	interval := m.rate.interval()
	// A full bucket lets Burst requests through at once: the arrival time
	// may run up to this far ahead of now.
	tolerance := interval * time.Duration(m.rate.Burst-1)
	m.mu.Lock()
	defer m.mu.Unlock()
	// The clock is read under the lock: a request that read it before,
	// then waited (for the lock, or for a CPU) while later ones went
	// through, was judged against their arrivals as if it came before
	// them, and refused (the rates bench's 8 clients at 1,000,000/s met
	// it on a busy machine).
	now := m.now()
	tat, ok := m.tat.Get(key)
	if !ok || tat.Before(now) {
		tat = now
	}
	if wait := tat.Sub(now) - tolerance; wait > 0 {
		return wait, nil
	}
	m.tat.Add(key, tat.Add(interval))
	return 0, nil
}

// Slots bounds how many things each key holds at once (running chunk
// PUTs of an upload, open websockets of a user), in this process. Keys
// holding nothing take no memory.
type Slots struct {
	max  int
	mu   sync.Mutex
	held map[string]int
}

// NewSlots returns Slots allowing max per key; max <= 0 allows any
// number (Acquire always succeeds).
func NewSlots(max int) *Slots {
	return &Slots{max: max, held: map[string]int{}}
}

// Acquire takes one of key's slots and reports whether there was one
// free. Every successful Acquire must be followed by one Release.
func (s *Slots) Acquire(key string) bool {
	if s == nil || s.max <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.held[key]
	if n >= s.max {
		return false
	}
	s.held[key] = n + 1
	return true
}

// Release gives back a slot Acquire took.
func (s *Slots) Release(key string) {
	if s == nil || s.max <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.held[key]; n > 1 {
		s.held[key] = n - 1
	} else {
		delete(s.held, key)
	}
}

// Held returns how many slots key holds.
func (s *Slots) Held(key string) int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held[key]
}

// Failover is a Limiter that asks a shared one (Redis) and, when that
// fails, lets the request through under a local one instead: a budget
// engine that is down must neither block requests nor fail them. After
// a failure it leaves the shared limiter alone for a moment (RetryShared),
// so an unreachable engine costs requests no time, and it says so in the
// log at most once per LogEvery.
type Failover struct {
	Shared Limiter
	Local  Limiter
	Log    *slog.Logger
	// What the log calls the limit ("mutations", "data plane").
	Name string

	now         func() time.Time
	sharedAfter atomic.Int64 // unix ns before which Shared is not asked
	loggedAt    atomic.Int64 // unix ns of the last warning
}

var _ Limiter = (*Failover)(nil)

const (
	// RetryShared is how long Failover leaves a failed shared limiter.
	RetryShared = time.Second
	// LogEvery spaces Failover's warnings.
	LogEvery = 30 * time.Second
)

// Allow implements Limiter; it never fails.
func (f *Failover) Allow(ctx context.Context, key string) (time.Duration, error) {
	now := time.Now
	if f.now != nil {
		now = f.now
	}
	t := now().UnixNano()
	if t >= f.sharedAfter.Load() {
		wait, err := f.Shared.Allow(ctx, key)
		if err == nil {
			return wait, nil
		}
		if ctx.Err() != nil {
			// The request ended, not the engine: it goes nowhere anyway.
			return 0, nil
		}
		f.sharedAfter.Store(t + int64(RetryShared))
		if last := f.loggedAt.Load(); t-last >= int64(LogEvery) && f.loggedAt.CompareAndSwap(last, t) && f.Log != nil {
			f.Log.Warn("rate limits held per replica: their shared store failed", "limit", f.Name, "err", err,
				"retry_in", RetryShared)
		}
	}
	return f.Local.Allow(ctx, key)
}
