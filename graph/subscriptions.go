package graph

import (
	"context"
	"sync"

	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/upload"
)

// subscriptionSlots bounds how many subscriptions one websocket runs at
// once. Each holds a fan-out registration and goroutines until it ends,
// so a client that subscribes in a loop without stopping would otherwise
// pile them up without limit on one cheap connection.
type subscriptionSlots struct {
	mu      sync.Mutex
	used    int
	max     int
	metrics *metrics.Metrics // counts the running subscriptions of all connections
}

type slotsKey struct{}

// withSubscriptionSlots gives a websocket connection's context its budget.
func withSubscriptionSlots(ctx context.Context, max int, m *metrics.Metrics) context.Context {
	return context.WithValue(ctx, slotsKey{}, &subscriptionSlots{max: max, metrics: m})
}

// takeSubscriptionSlot reserves a slot for the subscription whose context
// is ctx, until ctx ends (gqlgen cancels it when the subscription stops,
// whichever side stops it). A context with no budget (a subscription
// over plain HTTP, which gqlgen does not serve) is not limited.
func takeSubscriptionSlot(ctx context.Context) error {
	slots, ok := ctx.Value(slotsKey{}).(*subscriptionSlots)
	if !ok {
		return nil
	}
	slots.mu.Lock()
	defer slots.mu.Unlock()
	if slots.used >= slots.max {
		return upload.Errorf(upload.CodeTooManySubscriptions,
			"this connection already runs %d subscriptions, the most it may: stop one, or open another connection", slots.max)
	}
	slots.used++
	slots.metrics.SubscriptionStarted()
	context.AfterFunc(ctx, func() {
		slots.mu.Lock()
		slots.used--
		slots.mu.Unlock()
		slots.metrics.SubscriptionEnded()
	})
	return nil
}

// watch starts one of the caller's subscriptions within its connection's
// budget; start is the Service's Watch* call.
func watch(ctx context.Context, start func(userID string) (<-chan *upload.Progress, error)) (<-chan *upload.Progress, error) {
	uid, err := upload.CallerFrom(ctx)
	if err != nil {
		return nil, err
	}
	if err := takeSubscriptionSlot(ctx); err != nil {
		return nil, err
	}
	return start(uid)
}
