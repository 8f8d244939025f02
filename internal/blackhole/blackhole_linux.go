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
	"time"

	"golang.org/x/sys/unix"

	"github.com/spoolhq/spool/internal/required"
)

// Start makes a path to the TCP server at target (host:port, reachable
// from this process) and returns it; it is removed when the test ends.
// Where the machine cannot make one (no root, no ip), the test is
// skipped, or fails where CI=true.
func Start(t testing.TB, target string) *Hole {
	t.Helper()
	h, err := TryStart(t, target)
	if err != nil {
		required.Missing(t, "%v", err)
	}
	return h
}

// TryStart is Start, but returns why the machine cannot make the path
// instead of skipping the test, for a test that can go on without it.
func TryStart(t testing.TB, target string) (*Hole, error) {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("iproute2's ip, to make a network path that drops packets: %w", err)
	}
	// Random names and subnets keep holes apart, this process's and
	// those of test processes beside it (two of 16,384 /30s of
	// 10.213.0.0/16 meet once in about that many pairs).
	id := rand.Uint32() >> 4 // "sbh" + 7 hex digits + 1: within a link name's 15
	h := &Hole{ns: fmt.Sprintf("spool-blackhole-%x", id), peer: fmt.Sprintf("sbh%xp", id), host: fmt.Sprintf("sbh%xh", id)}
	slot := id % (1 << 14) * 4
	hostIP := fmt.Sprintf("10.213.%d.%d", slot>>8, slot&0xff+1)
	peerIP := fmt.Sprintf("10.213.%d.%d", slot>>8, slot&0xff+2)
	if out, err := exec.Command("ip", "netns", "add", h.ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("making a network namespace (this test needs root): ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { ip(t, "netns", "del", h.ns) })
	ip(t, "link", "add", h.host, "type", "veth", "peer", "name", h.peer, "netns", h.ns)
	ip(t, "addr", "add", hostIP+"/30", "dev", h.host)
	ip(t, "link", "set", h.host, "up")
	ip(t, "-n", h.ns, "addr", "add", peerIP+"/30", "dev", h.peer)
	ip(t, "-n", h.ns, "link", "set", h.peer, "up")
	if err := h.waitUp(); err != nil {
		t.Fatal(err)
	}

	ln, err := listenIn(h.ns, net.JoinHostPort(peerIP, "0"))
	if err != nil {
		t.Fatalf("listening in the network namespace %s: %v", h.ns, err)
	}
	h.Addr = ln.Addr().String()
	f := &forwarder{ln: ln, target: target}
	go f.serve()
	t.Cleanup(f.close)
	return h, nil
}

// Drop makes the path drop every packet, both ways, from now on. Like
// Restore, it may be called from any goroutine: a failure fails t, and
// the test goes on.
func (h *Hole) Drop(t testing.TB) {
	t.Helper()
	if err := run("-n", h.ns, "link", "set", h.peer, "down"); err != nil {
		t.Errorf("dropping the path's packets: %v", err)
	}
}

// Restore makes the path carry packets again, and returns once it does.
func (h *Hole) Restore(t testing.TB) {
	t.Helper()
	if err := run("-n", h.ns, "link", "set", h.peer, "up"); err != nil {
		t.Errorf("carrying the path's packets again: %v", err)
		return
	}
	if err := h.waitUp(); err != nil {
		t.Error(err)
	}
	// Addresses asked for in the outage went unresolved, and the kernel
	// answers packets to them "no route to host" until it asks again:
	// forget them, as a network healing elsewhere would not know them.
	for _, args := range [][]string{{"neigh", "flush", "dev", h.host}, {"-n", h.ns, "neigh", "flush", "dev", h.peer}} {
		if err := run(args...); err != nil {
			t.Error(err)
		}
	}
}

// waitUp returns once both ends of the veth pair carry packets. A link
// set up carries none until the kernel's link watch has seen its carrier
// and given it a queue, which it may put off for up to a second when
// links change at once (tests making holes side by side): packets sent
// before are dropped, and a test's first connection timed out. The link
// watch sets a link's state UP and its queue in one step under the
// kernel's routing lock, which ip's listing takes too, so a listing that
// says UP comes after both.
func (h *Hole) waitUp() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		host, errHost := exec.Command("ip", "-o", "link", "show", "dev", h.host).CombinedOutput()
		peer, errPeer := exec.Command("ip", "-n", h.ns, "-o", "link", "show", "dev", h.peer).CombinedOutput()
		if errHost == nil && errPeer == nil && strings.Contains(string(host), " state UP ") && strings.Contains(string(peer), " state UP ") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the veth pair %s, %s is not up 10 s after it was set up: %s %v; %s %v", h.host, h.peer, host, errHost, peer, errPeer)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ip runs ip with args, and ends the test if it fails.
func ip(t testing.TB, args ...string) {
	t.Helper()
	if err := run(args...); err != nil {
		t.Fatal(err)
	}
}

func run(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
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
