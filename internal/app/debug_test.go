package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/app"
)

// TestDebugAddr checks that --debug-addr serves Go's profiles on its own
// listener and that the API's port never does, with it or without it.
func TestDebugAddr(t *testing.T) {
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	const profileIndex = "Types of profiles available"

	off := startSpool(t, nil)
	if addr := off.main.DebugAddr(); addr != "" {
		t.Errorf("without DebugAddr, profiles are served at %s", addr)
	}
	if _, body := get(off.url + "/debug/pprof/"); strings.Contains(body, profileIndex) {
		t.Error("the API's port serves profiles without DebugAddr")
	}

	on := startSpool(t, func(c *app.Config) { c.DebugAddr = "127.0.0.1:0" })
	addr := on.main.DebugAddr()
	if addr == "" {
		t.Fatal("DebugAddr set, but no address to read profiles from")
	}
	if code, body := get("http://" + addr + "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, profileIndex) {
		t.Errorf("GET /debug/pprof/ on the debug address: %d, want 200 and the profile index", code)
	}
	if code, _ := get("http://" + addr + "/debug/pprof/heap?debug=1"); code != http.StatusOK {
		t.Errorf("GET /debug/pprof/heap on the debug address: %d, want 200", code)
	}
	if _, body := get(on.url + "/debug/pprof/"); strings.Contains(body, profileIndex) {
		t.Error("the API's port serves profiles too")
	}
	if code, _ := get("http://" + addr + "/graphql"); code != http.StatusNotFound {
		t.Errorf("the debug address answers /graphql with %d, want 404: it must serve profiles only", code)
	}
}
