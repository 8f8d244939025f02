package httpapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

const (
	opText   = 0x1
	opBinary = 0x2
	opPing   = 0x9
	opPong   = 0xa
)

// testFrame is one frame as a client sends it (masked) or, with unmasked,
// as a server does.
type testFrame struct {
	opcode   byte
	fin      bool
	size     int
	unmasked bool
	// claimed, when not zero, is the length the header states; the frame
	// then has a header only, like the start of a huge one.
	claimed uint64
}

func textFrame(size int) testFrame         { return testFrame{opcode: opText, fin: true, size: size} }
func openingFrame(size int) testFrame      { return testFrame{opcode: opText, size: size} }
func continuationFrame(size int) testFrame { return testFrame{opcode: opContinuation, size: size} }
func finalFrame(size int) testFrame        { return testFrame{opcode: opContinuation, fin: true, size: size} }
func controlFrame(op byte) testFrame       { return testFrame{opcode: op, fin: true, size: 125} }
func claimingFrame(n uint64) testFrame     { return testFrame{opcode: opBinary, fin: true, claimed: n} }

// bytes encodes the frame after RFC 6455 §5.2, with random payload and key.
func (f testFrame) bytes(rng *rand.Rand) []byte {
	b0 := f.opcode
	if f.fin {
		b0 |= 0x80
	}
	length := uint64(f.size)
	if f.claimed != 0 {
		length = f.claimed
	}
	var mask byte = 0x80
	if f.unmasked {
		mask = 0
	}
	out := []byte{b0}
	switch {
	case length <= 125:
		out = append(out, mask|byte(length))
	case length <= 0xffff:
		out = binary.BigEndian.AppendUint16(append(out, mask|126), uint16(length))
	default:
		out = binary.BigEndian.AppendUint64(append(out, mask|127), length)
	}
	if !f.unmasked {
		out = binary.BigEndian.AppendUint32(out, rng.Uint32())
	}
	if f.claimed != 0 {
		return out
	}
	for range f.size {
		out = append(out, byte(rng.Uint32()))
	}
	return out
}

// stream encodes frames and returns where each one's header ends.
func stream(frames []testFrame) (data []byte, headerEnds []int) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range frames {
		b := f.bytes(rng)
		payload := f.size
		if f.claimed != 0 {
			payload = 0
		}
		data = append(data, b...)
		headerEnds = append(headerEnds, len(data)-payload)
	}
	return data, headerEnds
}

// splits are the ways the tests cut a stream into Reads: whole, byte by
// byte, in fixed odd sizes and at random.
func splits(n int) map[string][]int {
	out := map[string][]int{"whole": {n}}
	for _, size := range []int{1, 2, 3, 7, 13, 1000} {
		var cuts []int
		for left := n; left > 0; left -= size {
			cuts = append(cuts, min(size, left))
		}
		out[fmt.Sprintf("by %d", size)] = cuts
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var cuts []int
	for left := n; left > 0; {
		size := min(1+rng.IntN(20), left)
		cuts = append(cuts, size)
		left -= size
	}
	out["random"] = cuts
	return out
}

func TestFrameScanner(t *testing.T) {
	const limit = 1000
	tests := []struct {
		name   string
		limit  uint64
		frames []testFrame
		// refused is the frame whose header breaks the limit, or -1.
		refused int
	}{
		{"7-bit length under", 100, []testFrame{textFrame(99)}, -1},
		{"7-bit length at", 100, []testFrame{textFrame(100)}, -1},
		{"7-bit length over", 100, []testFrame{textFrame(101)}, 0},
		{"16-bit length under", limit, []testFrame{textFrame(limit - 1)}, -1},
		{"16-bit length at", limit, []testFrame{textFrame(limit)}, -1},
		{"16-bit length over", limit, []testFrame{textFrame(limit + 1)}, 0},
		{"64-bit length at", 70000, []testFrame{textFrame(70000)}, -1},
		{"64-bit length over", 70000, []testFrame{textFrame(70001)}, 0},
		{"huge frame refused at its header", limit, []testFrame{claimingFrame(1 << 40)}, 0},
		{"length with the top bit set", limit, []testFrame{claimingFrame(1 << 63)}, 0},
		{"empty frames", limit, []testFrame{openingFrame(0), continuationFrame(0), finalFrame(0), textFrame(0)}, -1},
		{"continuations at the limit with pings between", limit, []testFrame{
			openingFrame(400), controlFrame(opPing), continuationFrame(300), controlFrame(opPong), controlFrame(opPing), finalFrame(300),
		}, -1},
		{"continuations over the limit with pings between", limit, []testFrame{
			openingFrame(400), controlFrame(opPing), continuationFrame(300), controlFrame(opPong), finalFrame(301),
		}, 4},
		{"over the limit in the middle", limit, []testFrame{
			openingFrame(600), continuationFrame(401), finalFrame(1),
		}, 1},
		{"control frames do not count", 100, []testFrame{
			controlFrame(opPing), openingFrame(50), controlFrame(opPing), controlFrame(opPing), finalFrame(50), controlFrame(opPong),
		}, -1},
		{"each message counts on its own", limit, []testFrame{
			textFrame(limit), openingFrame(limit - 1), finalFrame(1), {opcode: opBinary, fin: true, size: limit},
		}, -1},
		{"a later message over", limit, []testFrame{
			textFrame(limit), controlFrame(opPing), openingFrame(500), finalFrame(501),
		}, 3},
		{"unmasked frames (the server's)", 100, []testFrame{
			{opcode: opText, fin: true, size: 100, unmasked: true},
			{opcode: opText, size: 70, unmasked: true}, {opcode: opContinuation, fin: true, size: 31, unmasked: true},
		}, 2},
	}
	for _, tc := range tests {
		data, headerEnds := stream(tc.frames)
		for how, cuts := range splits(len(data)) {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				s := frameScanner{limit: tc.limit}
				at := 0
				for _, n := range cuts {
					if err := s.scan(data[at : at+n]); err != nil {
						if tc.refused < 0 {
							t.Fatalf("refused in bytes %d-%d, want the stream accepted", at, at+n)
						}
						// Refused on the bytes that end the frame's header.
						if end := headerEnds[tc.refused]; end <= at || end > at+n {
							t.Fatalf("refused in bytes %d-%d, want in the read that ends frame %d's header at %d",
								at, at+n, tc.refused, end)
						}
						return
					}
					at += n
				}
				if tc.refused >= 0 {
					t.Fatalf("accepted, want frame %d refused", tc.refused)
				}
				if !s.atFrameBoundary() {
					t.Fatal("not at a frame boundary after whole frames")
				}
			})
		}
	}
}

// pipe returns a messageLimitConn for the server end of a pipe whose
// client end is returned, after the server has written a handshake
// response that the client has read. refused counts refusals.
func pipe(t *testing.T, limit uint64) (server *messageLimitConn, client net.Conn, refused *int) {
	t.Helper()
	serverEnd, client := net.Pipe()
	t.Cleanup(func() { serverEnd.Close(); client.Close() })
	hangGuard := time.Now().Add(30 * time.Second)
	_ = serverEnd.SetDeadline(hangGuard)
	_ = client.SetDeadline(hangGuard)
	refused = new(int)
	server = newMessageLimitConn(serverEnd, limit, func() { *refused++ })
	const head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
	go func() { _, _ = server.Write([]byte(head)) }()
	if _, err := io.ReadFull(client, make([]byte, len(head))); err != nil {
		t.Fatal(err)
	}
	return server, client, refused
}

// readAll reads c in Reads of at most size bytes until it fails.
func readAll(c net.Conn, size int) ([]byte, error) {
	var got []byte
	buf := make([]byte, size)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
}

// The conn passes the client's bytes on untouched, whatever the size of
// the Reads.
func TestMessageLimitConnPassesBytes(t *testing.T) {
	data, _ := stream([]testFrame{openingFrame(400), controlFrame(opPing), finalFrame(600), textFrame(70000), controlFrame(0x8)})
	for _, size := range []int{1, 3, 4096} {
		t.Run(fmt.Sprint("reads of ", size), func(t *testing.T) {
			server, client, refused := pipe(t, 70000)
			go func() { _, _ = client.Write(data); client.Close() }()
			got, err := readAll(server, size)
			if err != io.EOF {
				t.Fatalf("read error %v, want EOF", err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(data))
			}
			if *refused != 0 {
				t.Fatalf("refused %d times", *refused)
			}
		})
	}
}

// closeFrame1009 is the close frame the server sends for limit.
func closeFrame1009(limit int) []byte {
	reason := fmt.Sprintf("message over %d bytes", limit)
	return append([]byte{0x88, byte(2 + len(reason)), 0x03, 0xf1}, reason...)
}

func TestMessageLimitConnRefuses(t *testing.T) {
	const limit = 1000
	server, client, refused := pipe(t, limit)
	ok, _ := stream([]testFrame{textFrame(limit)})
	over, _ := stream([]testFrame{openingFrame(limit), finalFrame(1)})

	fromServer := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(client)
		fromServer <- got
	}()
	go func() { _, _ = client.Write(append(ok, over...)) }()
	got, err := readAll(server, 7)
	if !errors.Is(err, errMessageTooBig) {
		t.Fatalf("read error %v, want errMessageTooBig", err)
	}
	if !bytes.HasPrefix(append(ok, over...), got) {
		t.Fatal("the bytes read before the refusal differ from those sent")
	}
	if _, err := server.Read(make([]byte, 10)); !errors.Is(err, errMessageTooBig) {
		t.Fatalf("read after the refusal: %v, want errMessageTooBig again", err)
	}
	if _, err := server.Write([]byte{0x81, 0}); err == nil {
		t.Fatal("a write after the close frame succeeded")
	}
	server.Close()
	if got, want := <-fromServer, closeFrame1009(limit); !bytes.Equal(got, want) {
		t.Fatalf("the client got % x, want the close frame % x alone", got, want)
	}
	if *refused != 1 {
		t.Fatalf("refused %d times, want 1", *refused)
	}
}

// A refusal while the server is between the two Writes of a frame (as
// gorilla writes a large one) sends the close frame after that frame.
func TestMessageLimitConnClosesBetweenFrames(t *testing.T) {
	const limit = 100
	server, client, _ := pipe(t, limit)
	serverFrame, _ := stream([]testFrame{{opcode: opText, fin: true, size: 5000, unmasked: true}})
	over, _ := stream([]testFrame{textFrame(limit + 1)})

	fromServer := make(chan []byte)
	go func() {
		got, _ := io.ReadAll(client)
		fromServer <- got
	}()
	if _, err := server.Write(serverFrame[:1000]); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = client.Write(over) }()
	if _, err := readAll(server, 4096); !errors.Is(err, errMessageTooBig) {
		t.Fatalf("read error %v, want errMessageTooBig", err)
	}
	if _, err := server.Write(serverFrame[1000:]); err != nil {
		t.Fatalf("finishing the frame: %v", err)
	}
	if _, err := server.Write([]byte{0x81, 0}); err == nil {
		t.Fatal("a write after the close frame succeeded")
	}
	server.Close()
	want := append(serverFrame, closeFrame1009(limit)...)
	if got := <-fromServer; !bytes.Equal(got, want) {
		t.Fatalf("the client got %d bytes, want the whole frame then the close frame (%d)", len(got), len(want))
	}
}

// Through a real server and gorilla on both ends, with gorilla reusing the
// hijacked buffers (ReadBufferSize 0) and with its own.
func TestLimitWebsocketMessages(t *testing.T) {
	const limit = 64 << 10
	for _, readBuffer := range []int{0, 4096} {
		t.Run(fmt.Sprint("read buffer ", readBuffer), func(t *testing.T) {
			serverErr := make(chan error, 1)
			echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// The writer underneath stays reachable before the upgrade.
				if err := http.NewResponseController(w).SetWriteDeadline(time.Time{}); err != nil {
					t.Errorf("ResponseController: %v", err)
				}
				up := websocket.Upgrader{ReadBufferSize: readBuffer}
				conn, err := up.Upgrade(w, r, nil)
				if err != nil {
					t.Errorf("upgrade: %v", err)
					return
				}
				defer conn.Close()
				for {
					kind, msg, err := conn.ReadMessage()
					if err != nil {
						serverErr <- err
						return
					}
					// Echo the size, and a large message that gorilla
					// writes in two Writes.
					reply := fmt.Sprintf("%d %s", len(msg), strings.Repeat("x", 10000))
					if err := conn.WriteMessage(kind, []byte(reply)); err != nil {
						serverErr <- err
						return
					}
				}
			})
			srv := httptest.NewServer(limitWebsocketMessages(echo, limit, slog.New(slog.DiscardHandler)))
			defer srv.Close()
			conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard only

			for _, size := range []int{10, limit - 1, limit} {
				if err := conn.WriteMessage(websocket.TextMessage, bytes.Repeat([]byte("a"), size)); err != nil {
					t.Fatal(err)
				}
				_, reply, err := conn.ReadMessage()
				if err != nil {
					t.Fatalf("after a message of %d bytes: %v", size, err)
				}
				if got, want := strings.Fields(string(reply))[0], fmt.Sprint(size); got != want {
					t.Fatalf("server read %s bytes, want %s", got, want)
				}
			}
			if err := conn.WriteMessage(websocket.BinaryMessage, make([]byte, limit+1)); err != nil {
				t.Fatal(err)
			}
			_, _, err = conn.ReadMessage()
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Fatalf("after a message over the limit: %v, want close 1009", err)
			}
			if err := <-serverErr; !errors.Is(err, errMessageTooBig) {
				t.Fatalf("server read error %v, want errMessageTooBig", err)
			}
		})
	}
}
