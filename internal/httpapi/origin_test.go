package httpapi

import "testing"

// TestOriginAllowed: the origin passed on to storage sessions is the
// server's own or an allowed one, and a real http(s) origin; anything
// else (malformed, "null", a path, another site) is dropped.
func TestOriginAllowed(t *testing.T) {
	const host = "spool.example:8080"
	allowed := []string{"https://app.example"}
	for _, c := range []struct {
		origin  string
		allowed []string
		want    bool
	}{
		{"http://spool.example:8080", nil, true},
		{"https://SPOOL.example:8080", nil, true},
		{"https://app.example", allowed, true},
		{"https://evil.example", allowed, false},
		{"https://app.example.evil.example", allowed, false},
		{"https://evil.example", []string{"*"}, true},
		{"null", []string{"*"}, false},
		{"file://spool.example:8080", nil, false},
		{"https://app.example/page", allowed, false},
		{"https://", []string{"*"}, false},
		{"%zz", []string{"*"}, false},
		{"app.example", allowed, false},
	} {
		if got := originAllowed(c.origin, host, c.allowed); got != c.want {
			t.Errorf("originAllowed(%q, allowed %v) = %v, want %v", c.origin, c.allowed, got, c.want)
		}
	}
}
