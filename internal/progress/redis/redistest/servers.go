package redistest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/spoolhq/spool/internal/eventually"
	"github.com/spoolhq/spool/internal/required"
)

// Server is a redis-server of the test's own on a free loopback port,
// never the shared one, which the test may kill and start again on the
// same port. It is killed when the test ends.
type Server struct {
	Addr string

	tb   testing.TB
	path string
	args []string
	dir  string

	// tls, when set, makes the server speak only TLS with its files
	// (and replicate and talk to its cluster over TLS); opts is how a
	// client reaches it, over TLS then.
	tls  *TLS
	opts *goredis.Options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has exited
	out    *bytes.Buffer // written by cmd until exited
}

// StartServer starts a redis-server that keeps nothing on disk, with
// args (redis-server's options, "--replicaof", "HOST", "PORT" say) after
// its own, and waits until it answers a PING. Without redis-server the
// test is skipped, or failed where CI=true.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	return startServer(tb, nil, args...)
}

// startServer starts a server as StartServer does, speaking only TLS
// with certs if they are given.
func startServer(tb testing.TB, certs *TLS, args ...string) *Server {
	tb.Helper()
	s := newServer(tb, certs)
	s.args = args
	s.Start()
	return s
}

// newServer returns a Server on a free address with a directory of its
// own, not started, killed when the test ends; it speaks only TLS with
// certs if they are given.
func newServer(tb testing.TB, certs *TLS) *Server {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		required.Missing(tb, "redis-server is not installed: %v", err)
	}
	s := &Server{Addr: FreeAddr(tb), tb: tb, path: path, dir: tb.TempDir(), tls: certs}
	s.opts = &goredis.Options{Addr: s.Addr, MaxRetries: -1}
	if certs != nil {
		s.opts.TLSConfig = certs.clientConfig(tb)
	}
	tb.Cleanup(s.Kill)
	return s
}

// newClient returns a client of the server that tries each command once;
// the caller closes it.
func (s *Server) newClient() *goredis.Client { return goredis.NewClient(s.options()) }

// options returns how a client reaches the server, each command tried
// once: over TLS, trusting its authority, if it speaks TLS.
func (s *Server) options() *goredis.Options {
	o := *s.opts
	return &o
}

// Client returns a client of the server that tries each command once,
// closed when the test ends.
func (s *Server) Client() *goredis.Client {
	c := s.newClient()
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// FreeAddr returns a loopback address nothing listens on now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Start starts the server again after Kill, on its address, and waits
// until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	listen := []string{"--port", port}
	if s.tls != nil {
		listen = []string{"--port", "0", "--tls-port", port, "--tls-cert-file", s.tls.CertFile, "--tls-key-file", s.tls.KeyFile,
			"--tls-ca-cert-file", s.tls.CAFile, "--tls-auth-clients", "no", "--tls-replication", "yes", "--tls-cluster", "yes"}
	}
	args := slices.Concat(listen, []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir}, s.args)
	s.run(exec.Command(s.path, args...))
}

func (s *Server) run(cmd *exec.Cmd) {
	s.tb.Helper()
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("starting %s: %v", s.path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited, s.out = cmd, exited, out
	s.mu.Unlock()

	c := s.newClient()
	defer c.Close()
	eventually.Holds(s.tb, "redis on "+s.Addr+" answering", func() bool {
		select {
		case <-exited:
			s.tb.Fatalf("redis on %s exited: %s", s.Addr, out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	})
}

// running reports whether the server was started and not stopped since.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Kill stops the server abruptly, as a crash or an OOM kill would, and
// waits for it to exit. It does nothing if the server is not running.
func (s *Server) Kill() { s.stop(os.Kill) }

// Stop asks the server to shut down (SIGTERM), as a host's shutdown or a
// rolling update does, and waits for it to exit: it closes its clients'
// connections. It does nothing if the server is not running.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

func (s *Server) stop(sig os.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		// Wait returns once the output pipe closes too, which a child
		// holding it would delay for good.
		s.tb.Errorf("redis on %s did not exit within 30 s of %v", s.Addr, sig)
	}
}

// Client returns a client of the server at addr that tries each command
// once, closed when the test ends.
func Client(tb testing.TB, addr string) *goredis.Client {
	tb.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Sentinels is a Redis primary, two replicas of it and a sentinel
// watching them (or several), each a process of the test's own: the
// shape of a Redis that fails over. A sentinel takes the primary for down
// after a second of silence (half a second made it take a just-promoted
// primary for down, again and again), and one sentinel needs no other to
// agree (quorum 1), so a failover takes a few seconds. Two replicas,
// because a sentinel turns a demoted primary into a replica only once it
// next asks it for its state, up to 10 s later: the replica not promoted
// is reconfigured within the failover, so it can be promoted in the next
// one at once.
type Sentinels struct {
	// Name is the primary's name, the URL's master_name.
	Name string
	// Servers are the primary and the replicas as started; which is
	// primary now is the sentinels' to say (Primary).
	Servers [3]*Server
	// Sentinel are the sentinels as started. A test may kill them; the
	// first one running answers for them all.
	Sentinel []*Server
	admins   []*goredis.SentinelClient
	tls      bool // every server and sentinel speaks only TLS
}

// StartSentinels starts a primary, its replicas and a sentinel, and waits
// until the sentinel knows the replicas and they are in sync, so a
// failover can happen. It skips or fails the test as StartServer does.
func StartSentinels(tb testing.TB) *Sentinels {
	tb.Helper()
	return startSentinels(tb, nil, 1)
}

// StartTLSSentinels starts them as StartSentinels does, every one
// speaking only TLS with a certificate of the test's own authority (the
// servers replicate over TLS, and the sentinel reaches them over TLS),
// and returns that authority's files.
func StartTLSSentinels(tb testing.TB) (*Sentinels, TLS) {
	tb.Helper()
	certs := NewTLS(tb)
	return startSentinels(tb, &certs, 1), certs
}

// StartManySentinels starts them as StartSentinels does with n
// sentinels, a majority of which must agree that the primary is down,
// and waits until each knows the others too.
func StartManySentinels(tb testing.TB, n int) *Sentinels {
	tb.Helper()
	return startSentinels(tb, nil, n)
}

func startSentinels(tb testing.TB, certs *TLS, n int) *Sentinels {
	tb.Helper()
	// Any server may be primary after a failover. None waits the
	// default 5 s for more replicas before it sends one a copy.
	primary := startServer(tb, certs, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(primary.Addr)
	s := &Sentinels{Name: "spool-test", tls: certs != nil, Servers: [3]*Server{primary,
		startServer(tb, certs, "--repl-diskless-sync-delay", "0", "--replicaof", host, port),
		startServer(tb, certs, "--repl-diskless-sync-delay", "0", "--replicaof", host, port)}}
	for range n {
		// A sentinel rewrites its configuration file, so it needs one of its own.
		sentinel := newServer(tb, certs)
		conf := filepath.Join(sentinel.dir, "sentinel.conf")
		_, sport, _ := net.SplitHostPort(sentinel.Addr)
		listen := "port " + sport + "\n"
		if certs != nil {
			listen = fmt.Sprintf("port 0\ntls-port %s\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\n"+
				"tls-auth-clients no\ntls-replication yes\n", sport, certs.CertFile, certs.KeyFile, certs.CAFile)
		}
		text := fmt.Sprintf("%sbind 127.0.0.1\ndir %s\n"+
			"sentinel monitor %s %s %s %d\n"+
			"sentinel down-after-milliseconds %[3]s 1000\n"+
			"sentinel failover-timeout %[3]s 3000\n", listen, sentinel.dir, s.Name, host, port, n/2+1)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			tb.Fatal(err)
		}
		sentinel.run(exec.Command(sentinel.path, conf, "--sentinel"))
		admin := goredis.NewSentinelClient(sentinel.options())
		tb.Cleanup(func() { _ = admin.Close() })
		s.Sentinel, s.admins = append(s.Sentinel, sentinel), append(s.admins, admin)
	}
	s.AwaitReplica(tb, s.Servers[1])
	s.AwaitReplica(tb, s.Servers[2])
	for i, admin := range s.admins {
		// Sentinels find each other through the primary, every 2 s.
		eventually.Holds(tb, fmt.Sprintf("sentinel %s knowing the %d others", s.Sentinel[i].Addr, n-1), func() bool {
			others, err := admin.Sentinels(context.Background(), s.Name).Result()
			return err == nil && len(others) == n-1
		})
	}
	return s
}

// admin returns a client of the first sentinel running.
func (s *Sentinels) admin() *goredis.SentinelClient {
	for i, srv := range s.Sentinel {
		if srv.running() {
			return s.admins[i]
		}
	}
	s.Sentinel[0].tb.Fatal("no sentinel is running")
	return nil
}

// AwaitReplica waits until srv is a replica of the sentinel's primary,
// in sync, and the sentinel lists it as a replica it reaches: then the
// sentinel can make srv primary. (The sentinel's own record of a
// replica's sync is refreshed every 10 s, or each second while the
// primary is down, so srv's own word is taken for it.)
func (s *Sentinels) AwaitReplica(tb testing.TB, srv *Server) {
	tb.Helper()
	c := srv.newClient()
	defer c.Close()
	eventually.Holds(tb, srv.Addr+" a replica in sync, known to the sentinel", func() bool {
		ctx := context.Background()
		primary, err := s.admin().GetMasterAddrByName(ctx, s.Name).Result()
		if err != nil {
			return false
		}
		info, err := c.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:slave\r\n") || !strings.Contains(info, "master_link_status:up\r\n") ||
			!strings.Contains(info, "master_port:"+primary[1]+"\r\n") {
			return false
		}
		replicas, err := s.admin().Replicas(ctx, s.Name).Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == srv.Addr && !strings.Contains(r["flags"], "down") &&
				!strings.Contains(r["flags"], "disconnected") {
				return true
			}
		}
		return false
	})
}

// URL returns the sentinel URL of the primary, naming the first
// sentinel: rediss:// if they speak TLS.
func (s *Sentinels) URL() string {
	return scheme(s.tls) + s.Sentinel[0].Addr + "/0?master_name=" + s.Name
}

// scheme starts a URL of a server that speaks TLS if tls is set.
func scheme(tls bool) string {
	if tls {
		return "rediss://"
	}
	return "redis://"
}

// Primary returns the server the sentinel names primary now.
func (s *Sentinels) Primary(tb testing.TB) *Server {
	tb.Helper()
	addr, err := s.admin().GetMasterAddrByName(context.Background(), s.Name).Result()
	if err != nil {
		tb.Fatalf("asking the sentinel for the primary: %v", err)
	}
	for _, srv := range s.Servers {
		if srv.Addr == net.JoinHostPort(addr[0], addr[1]) {
			return srv
		}
	}
	tb.Fatalf("the sentinel names %v primary, none of the servers", addr)
	return nil
}

// AwaitFailover waits until the sentinel has ended a failover from was
// to another primary, and that server takes writes, and returns it.
func (s *Sentinels) AwaitFailover(tb testing.TB, was *Server) *Server {
	tb.Helper()
	var now *Server
	eventually.Holds(tb, "the sentinel ending a failover from "+was.Addr, func() bool {
		// The sentinel names the promoted replica primary as soon as it
		// takes the role, before the failover has ended; until it has,
		// the sentinel starts no other.
		m, err := s.admin().Master(context.Background(), s.Name).Result()
		if err != nil || m["flags"] != "master" || net.JoinHostPort(m["ip"], m["port"]) == was.Addr {
			return false
		}
		now = s.Primary(tb)
		return true
	})
	c := now.newClient()
	defer c.Close()
	eventually.Holds(tb, "the new primary "+now.Addr+" taking writes", func() bool {
		return c.Set(context.Background(), "redistest:failover", "1", time.Second).Err() == nil
	})
	return now
}

// FailOver asks the sentinel to fail over with every server up, as an
// operator does before taking the primary's host down, and waits for it.
// It returns the new primary, and the replica that can be promoted next:
// the old primary turns replica of the new one only later (Sentinels).
func (s *Sentinels) FailOver(tb testing.TB) (primary, next *Server) {
	tb.Helper()
	was := s.Primary(tb)
	if err := s.admin().Failover(context.Background(), s.Name).Err(); err != nil {
		tb.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	primary = s.AwaitFailover(tb, was)
	// The replica not promoted is told to follow the new primary
	// within the failover.
	for _, srv := range s.Servers {
		if srv != was && srv != primary {
			next = srv
		}
	}
	s.AwaitReplica(tb, next)
	return primary, next
}

// Cluster is a Redis Cluster of the test's own: masters that share the
// 16,384 slots evenly, each with its replicas. A node is taken for failed
// after a second of silence, so a master's replica takes over about a
// second or two after the master dies.
type Cluster struct {
	// Masters are the masters as started, and Replicas[i] the replicas
	// of Masters[i]; which is master now is the cluster's to say.
	Masters  []*Server
	Replicas [][]*Server
	clients  map[*Server]*goredis.Client
	tls      bool // every node speaks only TLS, to clients and to each other
}

// client returns the cluster's client of node s, made once.
func (c *Cluster) client(tb testing.TB, s *Server) *goredis.Client {
	if c.clients[s] == nil {
		c.clients[s] = s.Client()
	}
	return c.clients[s]
}

// StartCluster starts masters × (1 + replicasEach) nodes, joins them into
// one cluster, and waits until every node says the cluster is ok. It
// skips or fails the test as StartServer does.
func StartCluster(tb testing.TB, masters, replicasEach int) *Cluster {
	tb.Helper()
	return startCluster(tb, nil, masters, replicasEach)
}

// StartTLSCluster starts one as StartCluster does, every node speaking
// only TLS with a certificate of the test's own authority (to each other
// too), and returns that authority's files.
func StartTLSCluster(tb testing.TB, masters, replicasEach int) (*Cluster, TLS) {
	tb.Helper()
	certs := NewTLS(tb)
	return startCluster(tb, &certs, masters, replicasEach), certs
}

func startCluster(tb testing.TB, certs *TLS, masters, replicasEach int) *Cluster {
	tb.Helper()
	node := func() *Server {
		return startServer(tb, certs, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0")
	}
	c := &Cluster{clients: map[*Server]*goredis.Client{}, tls: certs != nil}
	for i := range masters {
		c.Masters = append(c.Masters, node())
		c.Replicas = append(c.Replicas, nil)
		for range replicasEach {
			c.Replicas[i] = append(c.Replicas[i], node())
		}
	}
	ctx := context.Background()
	first := c.client(tb, c.Masters[0])
	for _, s := range c.Nodes() {
		host, port, _ := net.SplitHostPort(s.Addr)
		if err := first.ClusterMeet(ctx, host, port).Err(); err != nil {
			tb.Fatalf("CLUSTER MEET %s: %v", s.Addr, err)
		}
	}
	const slots = 16384
	for i, m := range c.Masters {
		lo, hi := i*slots/masters, (i+1)*slots/masters-1
		if err := c.client(tb, m).ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			tb.Fatalf("CLUSTER ADDSLOTSRANGE %d %d on %s: %v", lo, hi, m.Addr, err)
		}
		id, err := c.client(tb, m).ClusterMyID(ctx).Result()
		if err != nil {
			tb.Fatalf("CLUSTER MYID on %s: %v", m.Addr, err)
		}
		for _, r := range c.Replicas[i] {
			rc := c.client(tb, r)
			// A replica can follow only a master it has heard of.
			eventually.Holds(tb, r.Addr+" following "+m.Addr, func() bool {
				return rc.Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
			})
		}
	}
	for _, s := range c.Nodes() {
		sc := c.client(tb, s)
		eventually.Holds(tb, "the cluster ok on "+s.Addr, func() bool {
			info, err := sc.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok\r\n") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r\n", len(c.Nodes())))
		})
	}
	for _, rs := range c.Replicas {
		for _, r := range rs {
			rc := c.client(tb, r)
			eventually.Holds(tb, r.Addr+" in sync with its master", func() bool {
				info, err := rc.Info(ctx, "replication").Result()
				return err == nil && strings.Contains(info, "master_link_status:up\r\n")
			})
		}
	}
	return c
}

// Nodes returns every node as started, masters first.
func (c *Cluster) Nodes() []*Server {
	nodes := slices.Clone(c.Masters)
	for _, rs := range c.Replicas {
		nodes = append(nodes, rs...)
	}
	return nodes
}

// URL returns a URL naming one node, as a managed cluster's
// configuration endpoint does: spool learns the rest from it.
func (c *Cluster) URL() string { return scheme(c.tls) + c.Masters[0].Addr + "/0" }

// MasterOf returns the node that is master of key's slot now.
func (c *Cluster) MasterOf(tb testing.TB, key string) *Server {
	tb.Helper()
	ctx := context.Background()
	for _, s := range c.Nodes() {
		sc := c.client(tb, s)
		slot, err := sc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			continue // a node that is down
		}
		for addr, slots := range c.masters(tb, s) {
			for _, r := range slots {
				if r.Start <= slot && slot <= r.End {
					return c.node(tb, addr)
				}
			}
		}
	}
	tb.Fatalf("no node of the cluster names the master of %q's slot", key)
	return nil
}

// masters returns the slots of each master with slots, by its address,
// as node s sees them, or nil if s does not answer.
func (c *Cluster) masters(tb testing.TB, s *Server) map[string][]goredis.SlotRange {
	tb.Helper()
	shards, err := c.client(tb, s).ClusterShards(context.Background()).Result()
	if err != nil {
		return nil
	}
	masters := map[string][]goredis.SlotRange{}
	for _, sh := range shards {
		for _, n := range sh.Nodes {
			port := n.Port
			if c.tls {
				port = n.TLSPort
			}
			if n.Role == "master" && len(sh.Slots) > 0 {
				masters[net.JoinHostPort(n.IP, strconv.FormatInt(port, 10))] = sh.Slots
			}
		}
	}
	return masters
}

// node returns the node at addr.
func (c *Cluster) node(tb testing.TB, addr string) *Server {
	tb.Helper()
	for _, n := range c.Nodes() {
		if n.Addr == addr {
			return n
		}
	}
	tb.Fatalf("%s is no node of the cluster", addr)
	return nil
}

// OK reports whether every running node says the cluster is ok.
func (c *Cluster) OK(tb testing.TB) bool {
	tb.Helper()
	for _, s := range c.Nodes() {
		if !s.running() {
			continue
		}
		info, err := c.client(tb, s).ClusterInfo(context.Background()).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok\r\n") {
			return false
		}
	}
	return true
}

// FailedOver reports whether the cluster is ok and serves none of its
// slots from dead: a replica has taken over the slots dead served.
func (c *Cluster) FailedOver(tb testing.TB, dead *Server) bool {
	tb.Helper()
	if !c.OK(tb) {
		return false
	}
	for _, s := range c.Nodes() {
		if s == dead {
			continue
		}
		masters := c.masters(tb, s)
		if masters == nil {
			continue // down too
		}
		_, serves := masters[dead.Addr]
		return !serves
	}
	return false
}

// AwaitFailover waits until FailedOver holds.
func (c *Cluster) AwaitFailover(tb testing.TB, dead *Server) {
	tb.Helper()
	eventually.Holds(tb, "the cluster ok, its slots served by others than "+dead.Addr, func() bool { return c.FailedOver(tb, dead) })
}

// TLS is a certificate authority of the test's own and the files of a
// server certificate it signed for 127.0.0.1.
type TLS struct {
	CAFile, CertFile, KeyFile string
}

// NewTLS makes a certificate authority and a server (and client)
// certificate for 127.0.0.1 signed by it, valid for an hour, in the test's temporary
// directory.
func NewTLS(tb testing.TB) TLS {
	tb.Helper()
	dir := tb.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		// A cluster's nodes show each other their certificate as clients
		// on the cluster bus, which checks it whatever tls-auth-clients says.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	t := TLS{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), KeyFile: filepath.Join(dir, "server.key")}
	for file, block := range map[string]*pem.Block{
		t.CAFile:   {Type: "CERTIFICATE", Bytes: caDER},
		t.CertFile: {Type: "CERTIFICATE", Bytes: leafDER},
		t.KeyFile:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return t
}

// StartTLSServer starts a redis-server that speaks only TLS, with a
// certificate of its own authority (NewTLS), and waits until it answers.
// Clients need not show a certificate.
func StartTLSServer(tb testing.TB) (*Server, TLS) {
	tb.Helper()
	certs := NewTLS(tb)
	return startServer(tb, &certs), certs
}

// clientConfig returns the TLS settings of a client that trusts the
// authority.
func (t TLS) clientConfig(tb testing.TB) *tls.Config {
	tb.Helper()
	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(t.CAFile)
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		tb.Fatalf("reading %s: %v", t.CAFile, err)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
