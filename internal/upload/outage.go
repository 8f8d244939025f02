package upload

import (
	"sync"
	"time"
)

// outageLogEvery is how often a database outage is logged at most: an
// outage fails every request, and a line per request would bury the
// log (and cost the CPU the replica needs to recover).
const outageLogEvery = 10 * time.Second

// outageLog logs a database outage once per outageLogEvery, with how
// many more failures were seen since the last line.
type outageLog struct {
	mu         sync.Mutex
	next       time.Time // no line before
	suppressed int       // failures not logged since the last line
}

// NoteUnavailable logs err, an UNAVAILABLE failure met while doing op
// ("authenticating", "PUT /uploads/{id}", a GraphQL path...), at most
// once every 10 s: the line says how many failures went unlogged since
// the one before. Every transport calls it where it answers UNAVAILABLE.
func (s *Service) NoteUnavailable(op string, err error) {
	if s == nil {
		return // a transport built without a service, in tests
	}
	now := s.now()
	o := &s.outages
	o.mu.Lock()
	if now.Before(o.next) {
		o.suppressed++
		o.mu.Unlock()
		return
	}
	suppressed := o.suppressed
	o.suppressed, o.next = 0, now.Add(outageLogEvery)
	o.mu.Unlock()
	s.log.Error("database unavailable", "during", op, "err", err,
		"unlogged_failures", suppressed, "logged_at_most_every", outageLogEvery)
}
