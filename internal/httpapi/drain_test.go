package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// While draining, /readyz answers 503 "draining" at once, without
// probing the engines; /healthz stays 200 (the process is alive and
// finishing its work); and every response says Connection: close, which
// net/http honours by closing the connection after it. Before the drain,
// neither.
func TestDraining(t *testing.T) {
	var draining atomic.Bool
	var probed atomic.Int32
	h := New(Options{
		Ready:    func() bool { return !draining.Load() },
		Draining: draining.Load,
		Checks:   map[string]func(context.Context) error{"database": func(context.Context) error { probed.Add(1); return nil }},
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(path string) (*http.Response, map[string]string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var report map[string]string
		if path == "/readyz" {
			if err := json.NewDecoder(resp.Body).Decode(&report); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return resp, report
	}

	resp, report := get("/readyz")
	if resp.StatusCode != http.StatusOK || report["database"] != "ok" || resp.Close {
		t.Errorf("before the drain: /readyz %d %v (Connection: close %v), want 200 with the database ok, kept alive", resp.StatusCode, report, resp.Close)
	}
	draining.Store(true)
	probed.Store(0)
	resp, report = get("/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || report["server"] != "draining" {
		t.Errorf("draining: /readyz %d %v, want 503 with server draining", resp.StatusCode, report)
	}
	if n := probed.Load(); n != 0 {
		t.Errorf("draining: /readyz probed the engines %d times, want none", n)
	}
	if !resp.Close {
		t.Errorf("draining: /readyz without Connection: close")
	}
	resp, _ = get("/healthz")
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Errorf("draining: /healthz %d (Connection: close %v), want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
}
