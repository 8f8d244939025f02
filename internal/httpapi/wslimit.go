package httpapi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// gqlgen's websocket transport never calls SetReadLimit on the gorilla
// connection it makes and offers no hook to do so, so a client could send
// one message of any size and the server would read all of it into
// memory. These types bound a client's messages from outside: gorilla
// reads frames from the net.Conn that Hijack returns, so a conn that
// follows the frame headers (RFC 6455 §5.2) sees each message's length
// before its payload arrives.

// errMessageTooBig is what reading a websocket returns once the client
// has sent a message over the limit; gqlgen then drops the connection.
var errMessageTooBig = errors.New("websocket: the client sent a message over the size limit")

// closeFrameTimeout bounds how long refusing a message may wait to write
// the close frame (the client may have stopped reading); past it the
// connection is closed without one.
const closeFrameTimeout = 5 * time.Second

// limitWebsocketMessages bounds each message a client sends over a
// websocket upgraded below it to limit bytes of payload. A message over
// it closes the connection with status 1009 (Message Too Big).
func limitWebsocketMessages(next http.Handler, limit int64, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The test gqlgen uses to pick its websocket transport.
		if r.Header.Get("Upgrade") != "" {
			w = &limitingHijacker{ResponseWriter: w, limit: uint64(limit), refused: func() {
				log.Info("websocket message refused", "remote", r.RemoteAddr, "limit", limit)
			}}
		}
		next.ServeHTTP(w, r)
	})
}

// limitingHijacker hands out hijacked connections that enforce the limit.
// Only upgrade requests get one, and they need nothing else from it;
// http.ResponseController reaches the writer's other abilities through
// Unwrap.
type limitingHijacker struct {
	http.ResponseWriter
	limit   uint64
	refused func()
}

var _ http.Hijacker = (*limitingHijacker)(nil)

// Hijack hijacks the connection underneath (through Unwrap when it is
// wrapped) and returns it bounded.
func (w *limitingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	limited := newMessageLimitConn(conn, w.limit, w.refused)
	// brw still reads and writes the raw connection; gorilla reuses its
	// buffers. Point them at the bounded one so that nothing bypasses it.
	// A reader holding bytes cannot be moved without losing them: gorilla
	// refuses such a connection (the client spoke before the handshake).
	if brw.Reader.Buffered() == 0 {
		brw.Reader.Reset(limited)
	}
	if brw.Writer.Buffered() == 0 {
		brw.Writer.Reset(limited)
	}
	return limited, brw, nil
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *limitingHijacker) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// messageLimitConn is a server's websocket connection that follows the
// frames in both directions without copying or changing a byte. Once the
// client's current message runs over the limit, reading fails for good
// and a close frame with status 1009 goes to the client.
//
// The close frame must not land inside a frame the server is writing:
// gorilla writes a large frame in two Writes. So the conn also follows
// the server's frames, and writes the close frame at the first frame
// boundary, stopping all writes after it.
type messageLimitConn struct {
	net.Conn
	refused func()

	readMu  sync.Mutex
	in      frameScanner
	readErr error

	writeMu    sync.Mutex
	headEnd    int // bytes of responseHeadEnd written so far
	out        frameScanner
	closing    bool // a message was refused: send closeFrame at a frame boundary
	closeSent  bool
	closeFrame []byte
}

func newMessageLimitConn(conn net.Conn, limit uint64, refused func()) *messageLimitConn {
	reason := fmt.Sprintf("message over %d bytes", limit)
	frame := []byte{0x80 | opClose, byte(2 + len(reason))}
	frame = binary.BigEndian.AppendUint16(frame, closeMessageTooBig)
	return &messageLimitConn{
		Conn:       conn,
		refused:    refused,
		in:         frameScanner{limit: limit},
		out:        frameScanner{limit: math.MaxUint64},
		closeFrame: append(frame, reason...),
	}
}

// Read reads the client's bytes; it returns errMessageTooBig, now and
// after, once they make a message longer than the limit.
func (c *messageLimitConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return 0, c.readErr
	}
	n, err := c.Conn.Read(p)
	if c.in.scan(p[:n]) != nil {
		c.readErr = errMessageTooBig
		c.refuse()
		return 0, c.readErr
	}
	return n, err
}

// refuse sends the close frame now, or has the Write that finishes the
// server's current frame send it.
func (c *messageLimitConn) refuse() {
	if c.refused != nil {
		c.refused()
	}
	// A Write stuck on a client that does not read holds writeMu.
	guard := time.AfterFunc(closeFrameTimeout, func() { _ = c.Conn.Close() })
	defer guard.Stop()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.closing = true
	c.closeAtFrameBoundary()
}

// Write writes the server's bytes, until the close frame has gone out.
func (c *messageLimitConn) Write(p []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Write(p)
	c.follow(p[:n])
	c.closeAtFrameBoundary()
	return n, err
}

// follow tracks the server's frames, which start after the handshake's
// response head.
func (c *messageLimitConn) follow(p []byte) {
	for len(p) > 0 && c.headEnd < len(responseHeadEnd) {
		switch {
		case p[0] == responseHeadEnd[c.headEnd]:
			c.headEnd++
		case p[0] == '\r':
			c.headEnd = 1
		default:
			c.headEnd = 0
		}
		p = p[1:]
	}
	_ = c.out.scan(p) // the server's messages have no limit
}

func (c *messageLimitConn) closeAtFrameBoundary() {
	if !c.closing || c.closeSent || c.headEnd < len(responseHeadEnd) || !c.out.atFrameBoundary() {
		return
	}
	c.closeSent = true
	_, _ = c.Conn.Write(c.closeFrame)
}

// responseHeadEnd ends the handshake's HTTP response; frames follow.
const responseHeadEnd = "\r\n\r\n"

// RFC 6455 values.
const (
	opContinuation     = 0x0
	opClose            = 0x8 // control frames have opcodes 0x8 to 0xf
	closeMessageTooBig = 1009
	maxFrameHeader     = 14 // 2, 8 bytes of extended length, 4 of masking key
)

// frameScanner follows the frames of one direction of a websocket as its
// bytes go by, keeping nothing but the current frame header, and adds up
// each data message's payload. It reads lengths as sent: spool does not
// negotiate permessage-deflate, under which a message inflates after the
// limit has been checked.
type frameScanner struct {
	limit       uint64 // largest payload of a data message
	header      [maxFrameHeader]byte
	headerLen   int    // bytes of the current header seen
	payloadLeft uint64 // bytes of the current frame's payload still to come
	messageLen  uint64 // payload of the current data message so far
}

// scan follows p, the next bytes of the stream. It fails as soon as a
// frame header makes the current data message longer than the limit,
// before that frame's payload. Control frames (ping, pong, close) may
// come between a message's frames and do not count.
func (s *frameScanner) scan(p []byte) error {
	for len(p) > 0 {
		if s.payloadLeft > 0 {
			n := min(s.payloadLeft, uint64(len(p)))
			s.payloadLeft -= n
			p = p[n:]
			continue
		}
		s.header[s.headerLen] = p[0]
		s.headerLen++
		p = p[1:]
		if s.headerLen == s.headerSize() {
			if err := s.endHeader(); err != nil {
				return err
			}
		}
	}
	return nil
}

// headerSize is the length of the current header, as far as it can tell.
func (s *frameScanner) headerSize() int {
	if s.headerLen < 2 {
		return 2
	}
	size := 2
	switch s.header[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if s.header[1]&0x80 != 0 { // masked: every client frame
		size += 4
	}
	return size
}

func (s *frameScanner) endHeader() error {
	opcode := s.header[0] & 0x0f
	length := uint64(s.header[1] & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(s.header[2:]))
	case 127:
		length = binary.BigEndian.Uint64(s.header[2:])
	}
	s.headerLen, s.payloadLeft = 0, length
	if opcode >= opClose {
		return nil
	}
	if opcode != opContinuation {
		s.messageLen = 0 // a new message; gorilla refuses one that cuts into another
	}
	if length > s.limit-s.messageLen {
		return errMessageTooBig
	}
	s.messageLen += length
	return nil
}

func (s *frameScanner) atFrameBoundary() bool { return s.headerLen == 0 && s.payloadLeft == 0 }
