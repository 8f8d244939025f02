package graph

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/spoolhq/spool/internal/metrics"
	"github.com/spoolhq/spool/internal/ratelimit"
	"github.com/spoolhq/spool/internal/upload"
	"go.opentelemetry.io/otel/trace"

	"github.com/spoolhq/spool/internal/reqlog"
)

// wsTransport serves graphql-transport-ws and legacy graphql-ws without
// gqlgen's transport.Websocket, for memory: it hijacks the connection and
// returns from the net/http handler, so neither the handler's deep stack
// nor net/http's per-connection state outlive the upgrade; one goroutine
// per socket reads, with a small buffer of its own; keep-alive runs from
// a timer, not a goroutine. Operations still go through gqlgen's
// executor (CreateOperationContext, DispatchOperation), one goroutine per
// running operation as in gqlgen.
type wsTransport struct {
	upgrader     websocket.Upgrader
	log          *slog.Logger
	initFunc     transport.WebsocketInitFunc
	initTimeout  time.Duration
	pingInterval time.Duration
	readLimit    int64
	// sockets tracks the open sockets, for a drain (Websockets.GoAway).
	sockets *Websockets
	// userSockets counts each user's open sockets on this replica.
	userSockets *ratelimit.Slots
	metrics     *metrics.Metrics // counts open sockets; nil counts nothing
}

var _ graphql.Transport = (*wsTransport)(nil)

const (
	subprotocolTransportWS = "graphql-transport-ws"
	subprotocolGraphQLWS   = "graphql-ws"

	// closeFrameTimeout bounds how long closing may wait to send the
	// close frame to a client that has stopped reading.
	closeFrameTimeout = 5 * time.Second
	// wsWriteTimeout drops a client that does not take a message within it.
	wsWriteTimeout = 10 * time.Second
	// wsReadBuffer is the socket's read buffer, which every idle socket
	// keeps: messages are small, and larger ones are read through it in
	// pieces. It is the transport's own (see hijacker), which gorilla
	// takes only when larger than 256 bytes; 288 is an allocation size.
	wsReadBuffer = 288
)

// wsWriteBuffers lends write buffers for the time of one message, so an
// idle socket holds none.
var wsWriteBuffers sync.Pool

func (t *wsTransport) Supports(r *http.Request) bool {
	return r.Header.Get("Upgrade") != ""
}

func (t *wsTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	up := t.upgrader
	up.Subprotocols = []string{subprotocolTransportWS, subprotocolGraphQLWS}
	up.ReadBufferSize = 0 // gorilla reads through br (hijacker)
	up.WriteBufferSize = 4096
	up.WriteBufferPool = &wsWriteBuffers
	br := bufio.NewReaderSize(nil, wsReadBuffer)
	conn, err := up.Upgrade(hijacker{w, br}, r, nil)
	if err != nil {
		// The upgrader has answered the request already.
		t.log.InfoContext(r.Context(), "websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		return
	}
	if t.readLimit > 0 {
		conn.SetReadLimit(t.readLimit)
	}
	t.metrics.WebsocketOpened() // shutdown counts it closed, once
	// The socket outlives the request, whose context net/http cancels
	// when this handler returns; the connection's ends with the socket.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	ctx = context.WithValue(ctx, websocketSpanKey{}, trace.SpanContextFromContext(r.Context()))
	c := &wsConn{
		t:      t,
		conn:   conn,
		exec:   exec,
		legacy: conn.Subprotocol() != subprotocolTransportWS,
		br:     br,
		raw:    socketOf(conn.UnderlyingConn()),
		ctx:    ctx,
		cancel: cancel,
	}
	if !t.sockets.add(c) {
		// The server is draining: this client is told to go elsewhere.
		c.closeWith(closeGoingAway, goingAwayReason)
		return
	}
	// The socket outlives the request: the handler returns now.
	go c.serve()
}

// wsConn is one socket.
type wsConn struct {
	t      *wsTransport
	conn   *websocket.Conn
	exec   graphql.GraphExecutor
	legacy bool // graphql-ws rather than graphql-transport-ws
	// br is what gorilla reads the socket through; raw is the socket's
	// file descriptor, nil when it cannot be waited on directly (TLS).
	br  *bufio.Reader
	raw syscall.RawConn

	// ctx is the connection's, from InitFunc once acknowledged. The
	// request's headers are not kept for the operations' contexts
	// (OperationContext.Headers), which nothing in spool reads, to spare
	// every idle socket their memory.
	ctx    context.Context
	cancel context.CancelFunc // ends ctx, with the socket

	mu sync.Mutex // orders writes and guards what follows
	// active are the running operations. A slice, not a map by id: a
	// socket runs one or a few, and a map of one costs every idle socket
	// ~250 bytes.
	active     []*operation
	closed     bool
	timer      *time.Timer // keep-alive, and the token's expiry
	unanswered int         // pings sent and not answered yet
	// validUntil is when the token of connection_init stops being
	// accepted; zero if never.
	validUntil time.Time
	// slotOf is the user whose socket slot this connection holds, given
	// back by shutdown; "" for none.
	slotOf string
}

// operation is one running operation of a socket.
//
// A subscription that wakes it (upload.Receiver) has no goroutine while
// nothing happens: the subscription's sender, woken by an event, sends
// what is owed on to the client itself, inside Wake (or a goroutine of
// run's does, for what was owed before the operation was dispatched).
// Any other operation is read by one goroutine until it ends, as in
// gqlgen.
type operation struct {
	cancel context.CancelFunc
	c      *wsConn
	id     string

	mu       sync.Mutex
	attached bool // the subscription wakes the operation (Attach)
	owed     int  // receives owed for Wakes not consumed yet
	running  bool // a goroutine is sending the results
	ended    bool // the results ended (or failed): nothing more is sent
	// Set once dispatched; until then Wakes only count.
	responses graphql.ResponseHandler
	ctx       context.Context
	rc        *graphql.OperationContext
}

var _ upload.Receiver = (*operation)(nil)

// Attach is called by the subscription's Watch call, before it returns.
func (o *operation) Attach() {
	o.mu.Lock()
	o.attached = true
	o.mu.Unlock()
}

// Wake is called by the subscription after each send and after its end.
// Unless results are being sent already, the caller sends what is owed,
// here: it is the subscription's sender, which has nothing else to do,
// and a goroutine started per send would cost one more goroutine, and
// one more wake-up of the sender, per event and subscriber.
func (o *operation) Wake() {
	o.mu.Lock()
	o.owed++
	start := o.responses != nil && !o.running && !o.ended
	if start {
		o.running = true
	}
	o.mu.Unlock()
	if start {
		o.c.stream(o)
	}
}

// wsMessage is a message of either protocol.
type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (c *wsConn) serve() {
	if !c.init() {
		c.shutdown()
		return
	}
	c.mu.Lock()
	if next, ok := c.nextBeat(); ok {
		c.timer = time.AfterFunc(next, c.keepAlive)
	}
	c.mu.Unlock()
	// Authenticating grew this goroutine's stack, which it would keep:
	// a fresh one reads from here on.
	go c.readLoop()
}

// readLoop reads the client's messages until the socket ends, and has
// each handled on a goroutine of its own, one after another. It is the
// one goroutine an idle socket keeps, so it does nothing deep itself: a
// goroutine's stack grows for the deepest call it makes and, once grown,
// does not shrink back to the smallest size while parked (awaitMessage,
// docs/BENCHMARKS.md, "Load").
func (c *wsConn) readLoop() {
	for {
		c.awaitMessage()
		_, r, err := c.conn.NextReader()
		var b []byte
		if err == nil {
			b, err = io.ReadAll(r)
		}
		handled := make(chan bool)
		go c.handle(b, err, handled)
		if !<-handled {
			return
		}
	}
}

// awaitMessage returns when the socket has something to read, or failed.
// It parks the reader in fewer and smaller frames than gorilla's read
// does (about 400 bytes of stack rather than 1,060): the runtime starts
// goroutines with a stack the size of the average one it has seen plus
// 928 bytes, so with thousands of sockets parked in gorilla the new ones
// started with 4 KiB instead of 2 KiB (docs/BENCHMARKS.md, "Load"). It
// waits only when gorilla has nothing buffered: what the kernel holds
// is seen by peeking at the socket, without reading.
func (c *wsConn) awaitMessage() {
	if c.raw == nil || c.br.Buffered() > 0 {
		return
	}
	// An error (the socket closed) is gorilla's to report.
	_ = c.raw.Read(readable)
}

// hijacker gives gorilla the transport's own read buffer with the
// hijacked connection, instead of net/http's 4 KiB one, so that the
// reader can tell whether a message waits in it.
type hijacker struct {
	http.ResponseWriter
	br *bufio.Reader
}

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("websocket: response does not implement http.Hijacker")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Reader.Buffered() > 0 {
		// As gorilla refuses it: data after the upgrade request but
		// before the handshake's answer.
		_ = conn.Close()
		return nil, nil, errors.New("websocket: client sent data before handshake is complete")
	}
	h.br.Reset(conn)
	return conn, bufio.NewReadWriter(h.br, brw.Writer), nil
}

// socketOf is conn's file descriptor for waiting on, for a plain TCP
// connection; nil otherwise (a TLS connection buffers what it
// decrypted, which the socket does not show).
func socketOf(conn net.Conn) syscall.RawConn {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// handle acts on one message read (or the error that ended the reading)
// and says on handled whether reading goes on; when not, the socket is
// shut down.
func (c *wsConn) handle(b []byte, err error, handled chan<- bool) {
	goOn := false
	defer func() {
		if !goOn {
			c.shutdown()
		}
		handled <- goOn
	}()
	m, ok := c.decode(b, err)
	if !ok {
		return
	}
	start := graphql.Now()
	switch {
	case m.Type == "subscribe" && !c.legacy, m.Type == "start" && c.legacy:
		if m.ID == "" {
			c.closeWith(4400, "Invalid message: no id")
			return
		}
		if !c.start(start, m) {
			return
		}
	case m.Type == "complete" && !c.legacy, m.Type == "stop" && c.legacy:
		// The id is free again at once: a client may reuse it.
		c.mu.Lock()
		o := c.operation(m.ID)
		c.unregister(o)
		c.mu.Unlock()
		if o != nil {
			o.cancel()
		}
	case m.Type == "ping" && !c.legacy:
		c.write(wsMessage{Type: "pong", Payload: m.Payload})
	case m.Type == "pong" && !c.legacy:
		c.mu.Lock()
		c.unanswered = 0
		c.mu.Unlock()
	case m.Type == "connection_init":
		if c.legacy {
			c.closeWith(websocket.CloseProtocolError, "unexpected message")
		} else {
			c.closeWith(4429, "Too many initialisation requests")
		}
		return
	case m.Type == "connection_terminate" && c.legacy:
		c.closeWith(websocket.CloseNormalClosure, "terminated")
		return
	default:
		c.unexpected(m.Type)
		return
	}
	goOn = true
}

// read returns the next message; false means the socket is done (and,
// for bad input, closed with the code the protocol gives).
func (c *wsConn) read() (wsMessage, bool) {
	_, r, err := c.conn.NextReader()
	var b []byte
	if err == nil {
		b, err = io.ReadAll(r)
	}
	return c.decode(b, err)
}

// decode parses a message read, or acts on the error that ended the
// reading; false means the socket is done (and, for bad input, closed
// with the code the protocol gives).
func (c *wsConn) decode(b []byte, err error) (wsMessage, bool) {
	if err != nil {
		if errors.Is(err, websocket.ErrReadLimit) {
			// gorilla has sent the close frame, status 1009.
			c.t.log.InfoContext(c.ctx, "websocket message refused", "remote", c.conn.RemoteAddr().String(), "err", err)
		}
		return wsMessage{}, false
	}
	var m wsMessage
	// A decoder reads the first JSON value and ignores what follows, as
	// gqlgen's transport did.
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		c.invalid("invalid json")
		return wsMessage{}, false
	}
	if m.Type == "" {
		c.invalid("no type")
		return wsMessage{}, false
	}
	return m, true
}

func (c *wsConn) invalid(why string) {
	if c.legacy {
		c.connectionError(why)
		c.closeWith(websocket.CloseProtocolError, "decoding error")
		return
	}
	c.closeWith(4400, "Invalid message received: "+why)
}

func (c *wsConn) unexpected(typ string) {
	if c.legacy {
		c.connectionError("unexpected message " + typ)
		c.closeWith(websocket.CloseProtocolError, "unexpected message")
		return
	}
	c.closeWith(4400, "Invalid message received: unexpected type "+typ)
}

// init waits for connection_init within the init timeout, authenticates
// it and acknowledges.
func (c *wsConn) init() bool {
	if c.t.initTimeout > 0 {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.t.initTimeout))
	}
	m, ok := c.read()
	if !ok {
		if c.t.initTimeout > 0 {
			c.mu.Lock()
			closed := c.closed
			c.mu.Unlock()
			if !closed {
				c.closeWith(4408, "Connection initialisation timeout")
			}
		}
		return false
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	switch {
	case m.Type == "connection_init":
	case m.Type == "connection_terminate" && c.legacy:
		c.closeWith(websocket.CloseNormalClosure, "terminated")
		return false
	case (m.Type == "subscribe" && !c.legacy) || (m.Type == "start" && c.legacy):
		if c.legacy {
			c.unexpected(m.Type)
		} else {
			c.closeWith(4401, "Unauthorized")
		}
		return false
	default:
		c.unexpected(m.Type)
		return false
	}
	var payload transport.InitPayload
	if len(m.Payload) > 0 && !bytes.Equal(m.Payload, []byte("null")) {
		if err := json.Unmarshal(m.Payload, &payload); err != nil {
			c.invalid("bad connection_init payload")
			return false
		}
	}
	if c.t.initFunc != nil {
		ctx, _, err := c.t.initFunc(c.ctx, payload)
		if err != nil {
			code, reason := initFailure(err)
			if c.legacy {
				c.connectionError(reason)
			}
			c.closeWith(code, reason)
			return false
		}
		c.ctx = ctx
	}
	if !c.takeSlot() {
		return false
	}
	if until, ok := tokenValidUntil(c.ctx); ok {
		c.mu.Lock()
		c.validUntil = until
		c.mu.Unlock()
	}
	c.write(wsMessage{Type: "connection_ack"})
	if c.legacy {
		c.write(wsMessage{Type: "ka"})
	}
	return true
}

// closeForbidden is graphql-ws's CloseCode.Forbidden, which its clients
// retry: a client whose connectionParams give a fresh token carries on.
const closeForbidden = 4403

// tokenExpired closes a socket whose token has expired, with its
// operations: a subscription must not outlive the token it was opened
// with. A client reconnecting with the same token is accepted, and each
// operation then refused UNAUTHENTICATED ("… it has expired"), as at
// any connection_init with a bad token; with a fresh one it goes on.
func (c *wsConn) tokenExpired() {
	c.t.log.InfoContext(c.ctx, "websocket closed: its token expired", "remote", c.conn.RemoteAddr().String())
	if c.legacy {
		c.connectionError("the bearer token has expired; connect again with a fresh one (UNAUTHENTICATED)")
	}
	c.closeWith(closeForbidden, "Forbidden: the bearer token has expired")
}

type tokenValidUntilKey struct{}

// withTokenValidUntil notes in a connection's context when its token
// stops being accepted.
func withTokenValidUntil(ctx context.Context, until time.Time) context.Context {
	return context.WithValue(ctx, tokenValidUntilKey{}, until)
}

func tokenValidUntil(ctx context.Context) (time.Time, bool) {
	until, ok := ctx.Value(tokenValidUntilKey{}).(time.Time)
	return until, ok
}

// Close codes of the server's own failures at connection_init. graphql-ws
// clients retry 1013 (with back-off) and give up on 4500.
const (
	closeTryAgainLater = 1013 // RFC 6455's registry: "Try Again Later"
	closeInternalError = 4500 // graphql-ws's CloseCode.InternalServerError
)

// initFailure is the close code and reason for an InitFunc error: 1013
// when the database is unavailable (the client retries later and
// authenticates then), 4500 for another failure of the server.
func initFailure(err error) (int, string) {
	if upload.ErrorCode(err) == upload.CodeUnavailable {
		return closeTryAgainLater, "Try again later: the database is unavailable"
	}
	return closeInternalError, "Internal server error"
}

// takeSlot counts the socket against its user's websockets, once
// connection_init has said who the user is (browsers cannot send a token
// before). A socket over the limit is closed with 4429, which graphql-ws
// clients do not retry at once. Anonymous sockets are not counted.
func (c *wsConn) takeSlot() bool {
	userID, err := upload.CallerFrom(c.ctx)
	if err != nil {
		return true
	}
	if !c.t.userSockets.Acquire(userID) {
		c.t.log.Info("websocket refused: too many for the user", "user_id", userID, "remote", c.conn.RemoteAddr().String())
		if c.legacy {
			c.connectionError("too many websockets for this user; close one (RATE_LIMITED)")
		}
		c.closeWith(4429, "Too many websockets for this user")
		return false
	}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.slotOf = userID
	}
	c.mu.Unlock()
	if closed {
		c.t.userSockets.Release(userID)
		return false
	}
	return true
}

// keepAlive runs from the connection's timer: a socket whose token has
// expired is closed (tokenExpired); otherwise graphql-transport-ws gets
// a ping, and is dropped when two pings in a row went unanswered (so a
// pong has between one and two intervals to arrive, as with gqlgen);
// graphql-ws, whose clients do not answer, gets ka.
func (c *wsConn) keepAlive() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if !c.validUntil.IsZero() && !time.Now().Before(c.validUntil) {
		c.mu.Unlock()
		c.tokenExpired()
		return
	}
	if !c.legacy && c.unanswered >= 2 {
		c.mu.Unlock()
		c.t.log.InfoContext(c.ctx, "websocket dropped: no pong", "remote", c.conn.RemoteAddr().String())
		_ = c.conn.Close() // the reader ends, and shuts the rest down
		return
	}
	typ := "ka"
	if !c.legacy {
		typ = "ping"
		c.unanswered++
	}
	c.writeLocked(wsMessage{Type: typ})
	next, _ := c.nextBeat()
	c.timer.Reset(next)
	c.mu.Unlock()
}

// nextBeat is when the keep-alive timer fires next: at the ping interval,
// or sooner at the token's expiry, so that one timer serves both (a
// second timer per socket cost ~0.3 KiB of heap per idle subscription);
// ok is false when neither applies. c.mu is held.
func (c *wsConn) nextBeat() (next time.Duration, ok bool) {
	next, ok = c.t.pingInterval, c.t.pingInterval > 0
	if !c.validUntil.IsZero() {
		if left := max(time.Until(c.validUntil), 0); !ok || left < next {
			next, ok = left, true
		}
	}
	return next, ok
}

// start runs one operation; false means the socket was closed for it.
func (c *wsConn) start(start time.Time, m wsMessage) bool {
	c.mu.Lock()
	if c.operation(m.ID) != nil {
		c.mu.Unlock()
		if c.legacy {
			c.sendErrors(m.ID, &gqlerror.Error{Message: "subscriber for " + m.ID + " already exists"})
			return true
		}
		c.closeWith(4409, "Subscriber for "+m.ID+" already exists")
		return false
	}
	if c.closed {
		c.mu.Unlock()
		return false
	}
	// The operation is registered at once, so a complete that follows
	// finds it, and parsed and run on a goroutine of its own: the reader's
	// stack stays shallow, which is most of what an idle socket costs.
	// Each operation learns its own upload for its log lines.
	ctx, cancel := context.WithCancel(graphql.StartOperationTrace(reqlog.Fork(c.ctx)))
	o := &operation{cancel: cancel, c: c, id: m.ID}
	ctx = upload.WithReceiver(ctx, o)
	c.active = append(c.active, o)
	c.mu.Unlock()
	go c.run(ctx, o, start, m)
	return true
}

// run parses, validates and starts one operation, which resolves the
// subscription's root field (the snapshot's database work), then leaves
// the sending of its results to a fresh goroutine: a goroutine keeps the
// stack it grew, and this one is deep by now while the waiting is not.
func (c *wsConn) run(ctx context.Context, o *operation, start time.Time, m wsMessage) {
	handedOver := false
	defer func() {
		if r := recover(); r != nil {
			c.sendErrors(m.ID, &gqlerror.Error{Message: fmt.Sprint("internal system error: ", r)})
		}
		if !handedOver {
			o.end()
		}
	}()
	params := &graphql.RawParams{}
	d := json.NewDecoder(bytes.NewReader(m.Payload))
	d.UseNumber()
	if err := d.Decode(params); err != nil {
		c.sendErrors(m.ID, &gqlerror.Error{Message: "invalid json"})
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			c.sendErrors(m.ID, resp.Errors...)
		} else {
			c.sendResponse(m.ID, &graphql.Response{Errors: errs})
		}
		return
	}
	responses, ctx := c.exec.DispatchOperation(graphql.WithOperationContext(ctx, rc), rc)
	handedOver = true
	// The operation's statistics (timings, and the extensions' entries
	// such as the complexity) are read by tracing extensions spool does
	// not use; a subscription would keep their map for its whole life.
	rc.Stats = graphql.Stats{}
	o.mu.Lock()
	o.responses, o.ctx, o.rc = responses, ctx, rc
	send := !o.attached || o.owed > 0
	o.running = send
	o.mu.Unlock()
	if send {
		go c.stream(o)
	}
}

// stream sends an operation's results: until they end, or, for a
// subscription that wakes the operation, while receives are owed.
func (c *wsConn) stream(o *operation) {
	defer func() {
		if r := recover(); r != nil {
			err := o.rc.Recover(o.ctx, r)
			var gqlerr *gqlerror.Error
			if !errors.As(err, &gqlerr) {
				gqlerr = &gqlerror.Error{}
				if err != nil {
					gqlerr.Message = err.Error()
				}
			}
			c.sendErrors(o.id, gqlerr)
			o.end()
		}
	}()
	for {
		o.mu.Lock()
		if o.attached {
			if o.owed == 0 || o.ended {
				o.running = false
				o.mu.Unlock()
				return
			}
			o.owed--
		}
		o.mu.Unlock()
		resp := o.responses(o.ctx)
		if resp == nil {
			o.end()
			return
		}
		c.sendResponse(o.id, resp)
	}
}

// end marks the operation's results ended, once, and finishes it.
func (o *operation) end() {
	o.mu.Lock()
	ended := o.ended
	o.ended, o.running = true, false
	o.mu.Unlock()
	if !ended {
		o.c.finish(o, o.id)
	}
}

// operation returns the running operation id, or nil; c.mu must be held.
func (c *wsConn) operation(id string) *operation {
	for _, o := range c.active {
		if o.id == id {
			return o
		}
	}
	return nil
}

// unregister forgets o if it is running (nil is none); c.mu must be held.
func (c *wsConn) unregister(o *operation) {
	if i := slices.Index(c.active, o); o != nil && i >= 0 {
		c.active = slices.Delete(c.active, i, i+1)
	}
}

// finish unregisters an operation that ended and tells the client.
func (c *wsConn) finish(o *operation, id string) {
	c.mu.Lock()
	c.unregister(o)
	c.mu.Unlock()
	o.cancel()
	c.complete(id)
}

func (c *wsConn) sendResponse(id string, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		panic(err)
	}
	typ := "next"
	if c.legacy {
		typ = "data"
	}
	c.write(wsMessage{ID: id, Type: typ, Payload: b})
}

func (c *wsConn) sendErrors(id string, errs ...*gqlerror.Error) {
	b, err := json.Marshal(errs)
	if err != nil {
		panic(err)
	}
	c.write(wsMessage{ID: id, Type: "error", Payload: b})
}

func (c *wsConn) complete(id string) {
	c.write(wsMessage{ID: id, Type: "complete"})
}

func (c *wsConn) connectionError(msg string) {
	b, _ := json.Marshal(&gqlerror.Error{Message: msg})
	c.write(wsMessage{Type: "connection_error", Payload: b})
}

func (c *wsConn) write(m wsMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeLocked(m)
}

// writeLocked sends m unless the socket is closed; c.mu must be held. A
// client that does not take it in time is disconnected.
func (c *wsConn) writeLocked(m wsMessage) {
	if c.closed {
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, b); err != nil {
		_ = c.conn.Close()
	}
}

// closeWith sends a close frame with code and reason, then closes.
func (c *wsConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if !c.closed {
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeFrameTimeout))
	}
	c.mu.Unlock()
	c.shutdown()
}

// shutdown stops every operation and the keep-alive, and closes the
// socket; it is safe to call more than once.
func (c *wsConn) shutdown() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.t.metrics.WebsocketClosed()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.slotOf != "" {
		c.t.userSockets.Release(c.slotOf)
		c.slotOf = ""
	}
	for _, o := range c.active {
		o.cancel()
	}
	c.mu.Unlock()
	c.cancel()
	_ = c.conn.Close()
	c.t.sockets.remove(c)
}
