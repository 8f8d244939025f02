package graph

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// gqlgen accepts websockets through an adapter (transport.Websocket's
// Implementation). Its own default is coder/websocket, and since v0.17.92
// it ships no gorilla one; spool keeps gorilla/websocket, which its
// clients, tests and tools already speak, with this small adapter. The
// message size limit (PayloadReadLimit) and the pong deadline
// (PingPongInterval) reach gorilla through SetReadLimit and
// SetReadDeadline, which gqlgen looks for on the connection.

// closeFrameTimeout bounds how long closing may wait to send the close
// frame to a client that has stopped reading.
const closeFrameTimeout = 5 * time.Second

// gorillaWebsockets upgrades requests with upgrader, which decides the
// allowed origins and buffer sizes; gqlgen supplies the subprotocols.
type gorillaWebsockets struct {
	upgrader websocket.Upgrader
	log      *slog.Logger
}

var _ transport.WebsocketImplementation = gorillaWebsockets{}

func (g gorillaWebsockets) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	upgrader := g.upgrader
	upgrader.Subprotocols = o.Subprotocols
	conn, err := upgrader.Upgrade(w, r, o.ResponseHeader)
	if err != nil {
		return nil, err
	}
	return gorillaConn{Conn: conn, log: g.log}, nil
}

// gorillaConn is one accepted connection. SetReadLimit and
// SetReadDeadline come from the gorilla connection.
type gorillaConn struct {
	*websocket.Conn
	log *slog.Logger
}

var (
	_ transport.WebsocketConn          = gorillaConn{}
	_ transport.WebsocketReadLimiter   = gorillaConn{}
	_ transport.WebsocketReadDeadliner = gorillaConn{}
)

// NextReader returns the client's next message, read whole, so that a
// message over the read limit fails here rather than in gqlgen's JSON
// decoder, where it would pass for bad JSON. By then gorilla has sent the
// client a close frame with status 1009 (Message Too Big). A client's
// normal close is transport.ErrWebsocketClosed, as gqlgen asks of
// adapters.
func (c gorillaConn) NextReader() (int, io.Reader, error) {
	kind, r, err := c.Conn.NextReader()
	if err == nil {
		var msg []byte
		if msg, err = io.ReadAll(r); err == nil {
			return kind, bytes.NewReader(msg), nil
		}
	}
	switch {
	case errors.Is(err, websocket.ErrReadLimit):
		c.log.Info("websocket message refused", "remote", c.RemoteAddr().String(), "err", err)
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseNoStatusReceived):
		err = transport.ErrWebsocketClosed
	}
	return kind, nil, err
}

// WriteClose sends a close frame. gqlgen calls it under the lock that
// orders its writes; gorilla's control frames may be written alongside
// others and give up after their deadline.
func (c gorillaConn) WriteClose(code int, reason string) error {
	return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeFrameTimeout))
}
