package app_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// dbProxy forwards TCP connections to a database server and can cut
// them: every open connection closed, new ones refused, for a while. It
// stands between spool and PostgreSQL to play a database outage.
type dbProxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu          sync.Mutex
	conns       map[net.Conn]struct{}
	refuseUntil time.Time
	// armed, when set, cuts for armed.d as soon as a client that sent a
	// message containing armed.marker sends one containing
	// armed.trigger, right after forwarding it.
	armed *cutTrigger
	// holdReplies is set from when armed fires until its cut is done.
	holdReplies bool
	// armedReply, when set, cuts for its d instead of forwarding the
	// first answer of the server that contains all of its words.
	armedReply *replyTrigger
}

type replyTrigger struct {
	words [][]byte
	d     time.Duration
	cut   chan cutWindow
}

type cutTrigger struct {
	marker, trigger []byte
	d               time.Duration
	cut             chan cutWindow
}

// cutWindow is when a cut began and when new connections were let
// through again.
type cutWindow struct{ from, until time.Time }

func startDBProxy(t testing.TB, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		_ = ln.Close()
		p.closeAll()
	})
	go p.accept()
	return p
}

// Addr is where clients connect, HOST:PORT.
func (p *dbProxy) Addr() string { return p.ln.Addr().String() }

func (p *dbProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refusing := time.Now().Before(p.refuseUntil)
		p.mu.Unlock()
		if refusing {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

// pipe copies from src to dst; fromClient copies watch for the trigger.
func (p *dbProxy) pipe(dst, src net.Conn, fromClient bool) {
	marked := false
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !fromClient && (p.holdingReplies() || p.maybeCutReply(buf[:n])) {
			return
		}
		if n > 0 {
			var fired *cutTrigger
			if fromClient {
				fired, marked = p.fires(buf[:n], marked)
			}
			_, werr := dst.Write(buf[:n])
			if fired != nil {
				// Even if the write failed: the replies stay held until
				// a cut.
				fired.cut <- p.Cut(fired.d)
			}
			if werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				return
			}
			return
		}
	}
}

// fires reports the armed trigger that the connection's message msg
// fires, if it does, and whether the connection is marked. A trigger
// that fires is disarmed, and every answer of the server is held from
// then until the cut: the answer to the message (a COMMIT's) must not
// reach the client before its connection dies.
func (p *dbProxy) fires(msg []byte, marked bool) (*cutTrigger, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.armed
	if a == nil {
		return nil, false
	}
	lower := bytes.ToLower(msg)
	if !marked {
		return nil, bytes.Contains(lower, a.marker)
	}
	if !bytes.Contains(lower, a.trigger) {
		return nil, true
	}
	p.armed = nil
	p.holdReplies = true
	return a, false
}

// holdingReplies reports whether a fired trigger's cut is under way, so
// a server's answer is dropped, and its connection closed, unforwarded.
func (p *dbProxy) holdingReplies() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holdReplies
}

// CutOnReply arms a cut of d: the first answer of the server that
// contains every one of words (compared as they are) is not forwarded,
// and every connection is cut instead. Cutting on the answer to a
// statement that commits by itself (River's fetch of jobs, one UPDATE)
// leaves it done on the server while the client never hears of it.
func (p *dbProxy) CutOnReply(d time.Duration, words ...string) <-chan cutWindow {
	a := &replyTrigger{d: d, cut: make(chan cutWindow, 1)}
	for _, w := range words {
		a.words = append(a.words, []byte(w))
	}
	p.mu.Lock()
	p.armedReply = a
	p.mu.Unlock()
	return a.cut
}

// maybeCutReply cuts, and returns true, if the server's answer msg fires
// the armed reply trigger.
func (p *dbProxy) maybeCutReply(msg []byte) bool {
	p.mu.Lock()
	a := p.armedReply
	if a == nil {
		p.mu.Unlock()
		return false
	}
	for _, w := range a.words {
		if !bytes.Contains(msg, w) {
			p.mu.Unlock()
			return false
		}
	}
	p.armedReply = nil
	p.mu.Unlock()
	a.cut <- p.Cut(a.d)
	return true
}

// Cut closes every connection and refuses new ones for d.
func (p *dbProxy) Cut(d time.Duration) cutWindow {
	p.mu.Lock()
	w := cutWindow{from: time.Now(), until: time.Now().Add(d)}
	p.refuseUntil = w.until
	p.mu.Unlock()
	p.closeAll()
	p.mu.Lock()
	p.holdReplies = false
	p.mu.Unlock()
	return w
}

// Restore lets new connections through again, ending a cut early.
func (p *dbProxy) Restore() {
	p.mu.Lock()
	p.refuseUntil = time.Time{}
	p.mu.Unlock()
}

// CutOn arms a cut of d: once a connection has sent a message that
// contains marker, its next message that contains trigger (both compared
// in lower case) is forwarded and then every connection is cut. The
// channel receives the cut's window once it happens. The server sees
// the whole message before the connection closes, and its answer never
// reaches the client: cutting on a COMMIT commits on the server while the
// client sees its connection die.
func (p *dbProxy) CutOn(marker, trigger string, d time.Duration) <-chan cutWindow {
	a := &cutTrigger{marker: bytes.ToLower([]byte(marker)), trigger: bytes.ToLower([]byte(trigger)), d: d, cut: make(chan cutWindow, 1)}
	p.mu.Lock()
	p.armed = a
	p.mu.Unlock()
	return a.cut
}

func (p *dbProxy) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}
