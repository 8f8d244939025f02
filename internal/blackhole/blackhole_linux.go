package blackhole

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/required"
)

// Start makes a path to the TCP server at target (host:port, reachable
// from this process) and returns it; it is removed when the test ends.
func Start(t testing.TB, target string) *Hole {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		required.Missing(t, "iproute2's ip, to make a network path that drops packets: %v", err)
	}
	// Random names and subnets keep holes apart, this process's and
	// those of test processes beside it (two of 16,384 /30s of
	// 10.213.0.0/16 meet once in about that many pairs).
	id := rand.Uint32() >> 4 // "sbh" + 7 hex digits + 1: within a link name's 15
	h := &Hole{ns: fmt.Sprintf("spool-blackhole-%x", id), peer: fmt.Sprintf("sbh%xp", id)}
	host := fmt.Sprintf("sbh%xh", id)
	slot := id % (1 << 14) * 4
	hostIP := fmt.Sprintf("10.213.%d.%d", slot>>8, slot&0xff+1)
	peerIP := fmt.Sprintf("10.213.%d.%d", slot>>8, slot&0xff+2)
	if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
		required.Missing(t, "making a network namespace (this test needs root): ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { ip(t, "netns", "del", h.ns) })
	ip(t, "link", "add", host, "type", "veth", "peer", "name", h.peer, "netns", h.ns)
	ip(t, "addr", "add", hostIP+"/30", "dev", host)
	ip(t, "link", "set", host, "up")
	ip(t, "-n", h.ns, "addr", "add", peerIP+"/30", "dev", h.peer)
	ip(t, "-n", h.ns, "link", "set", h.peer, "up")

	ln, err := listenIn(h.ns, net.JoinHostPort(peerIP, "0"))
	if err != nil {
		t.Fatalf("listening in the network namespace %s: %v", h.ns, err)
	}
	h.Addr = ln.Addr().String()
	f := &forwarder{ln: ln, target: target}
	go f.serve()
	t.Cleanup(f.close)
	return h
}

// Drop makes the path drop every packet, both ways, from now on.
func (h *Hole) Drop(t testing.TB) {
	t.Helper()
	ip(t, "-n", h.ns, "link", "set", h.peer, "down")
}

// Restore makes the path carry packets again.
func (h *Hole) Restore(t testing.TB) {
	t.Helper()
	ip(t, "-n", h.ns, "link", "set", h.peer, "up")
}

func ip(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// listenIn listens on addr inside the named network namespace. A socket
// belongs to the namespace of the thread that made it, so one thread
// enters the namespace for the listen alone; the connections the
// listener accepts stay in the namespace, while everything else this
// process dials (the forwarder's way on to the server) does not.
func listenIn(ns, addr string) (net.Listener, error) {
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	ln, listenErr := net.Listen("tcp", addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so it ends with this goroutine
		// instead of running others inside the namespace.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("leaving the namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ln, listenErr
}

// forwarder passes each connection accepted in the namespace on to the
// server.
type forwarder struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func (f *forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", f.target)
		if err != nil {
			c.Close()
			continue
		}
		f.mu.Lock()
		f.conns = append(f.conns, c, s)
		f.mu.Unlock()
		f.wg.Add(2)
		go f.pipe(s, c)
		go f.pipe(c, s)
	}
}

func (f *forwarder) pipe(dst, src net.Conn) {
	defer f.wg.Done()
	_, err := io.Copy(dst, src)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		src.Close()
	}
	dst.Close()
}

func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
