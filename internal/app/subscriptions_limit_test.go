package app_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/spoolhq/spool/internal/app"
)

// One websocket runs at most MaxSubscriptions subscriptions at once; a
// stopped one frees its slot, and another connection has its own budget.
func TestSubscriptionsPerConnectionAreBounded(t *testing.T) {
	t.Parallel()
	s := startSpool(t, func(c *app.Config) { c.MaxSubscriptions = 3 })
	alice := s.token("alice")
	up := s.planOne(alice, file("a.png", "image/png", 1000))
	const op = `subscription($id: ID!) { uploadProgress(uploadId: $id) { status } }`

	ws := s.dialWS(alice, nil)
	for _, id := range []string{"a", "b", "c"} {
		ws.subscribe(id, op, vars("id", up.ID))
		if m := ws.next(id); m.Type != "next" {
			t.Fatalf("subscription %s: got %s %s, want its snapshot", id, m.Type, m.Payload)
		}
	}
	ws.subscribe("d", op, vars("id", up.ID))
	if err := subscriptionError(ws, "d"); err.code() != "TOO_MANY_SUBSCRIPTIONS" {
		t.Fatalf("fourth subscription: got %s (%q), want TOO_MANY_SUBSCRIPTIONS", err.code(), err.Message)
	}

	// The slot comes back once the server has ended "a"; until then a new
	// subscription may still be refused, so try a bounded number of times.
	ws.stop("a")
	freed := false
	for try := range 100 {
		id := fmt.Sprintf("e%d", try)
		ws.subscribe(id, op, vars("id", up.ID))
		if m := ws.next(id); m.Type == "next" && !hasErrors(m) {
			freed = true
			break
		}
	}
	if !freed {
		t.Fatal("stopping a subscription never freed its slot")
	}

	other := s.dialWS(alice, nil)
	for _, id := range []string{"x", "y", "z"} {
		other.subscribe(id, op, vars("id", up.ID))
		if m := other.next(id); m.Type != "next" || hasErrors(m) {
			t.Fatalf("second connection, subscription %s: got %s %s, want its snapshot", id, m.Type, m.Payload)
		}
	}
}

// hasErrors reports whether a "next" message carries GraphQL errors.
func hasErrors(m wsMessage) bool {
	var p struct {
		Errors []gqlError `json:"errors"`
	}
	return json.Unmarshal(m.Payload, &p) == nil && len(p.Errors) > 0
}
