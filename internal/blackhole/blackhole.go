// Package blackhole gives tests a network path to a TCP server that can
// be made to drop every packet, as a network partition or a host that
// froze does: unlike a proxy that stops forwarding (toxiproxy's), nothing
// on the way acknowledges what is sent, so the sender's kernel
// retransmits until something gives up. That is the outage a TCP user
// timeout exists for, and only a real network path can show it.
//
// On Linux the path is a veth pair into a network namespace of the test's
// own, where a forwarder listens; taking the namespace's end of the pair
// down drops the packets. It needs root and iproute2's ip: without them
// the test is skipped, or fails where CI=true.
//
// Cut silences one connection instead, both of whose ends are on this
// machine: the server's end too, which a Hole leaves talking to its
// forwarder. It needs root and nftables' nft.
package blackhole

// Hole is a path to a TCP server that Drop cuts off and Restore gives back.
type Hole struct {
	// Addr is the host:port to dial instead of the server's.
	Addr string

	ns, peer, host string // the namespace, its end of the veth pair, and this one's
}
