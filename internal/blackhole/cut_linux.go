package blackhole

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/spoolhq/spool/internal/required"
)

// Cut drops, from now until the test ends, every packet of the TCP
// connection between a and b that this machine receives. For a connection
// whose ends are both on this machine (over loopback, where a Hole cannot
// reach) that is every packet, both ways: each end hears nothing more from
// the other, as when the other's host vanished or a partition cut it off,
// and nothing tells either end so. A server's side of its connections is
// what a Hole cannot cut: its peer there is the Hole's forwarder, which
// goes on answering.
//
// It needs root and nftables' nft: without them the test is skipped, or
// fails where CI=true.
func Cut(t testing.TB, a, b *net.TCPAddr) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		required.Missing(t, "nftables' nft, to drop a connection's packets: %v", err)
	}
	family := "ip"
	if a.IP.To4() == nil {
		family = "ip6"
	}
	// A table of the cut's own, so that cuts side by side, in this
	// process or others, are added and deleted apart.
	table := fmt.Sprintf("spool_cut_%x", rand.Uint32())
	rule := func(from, to *net.TCPAddr) string {
		return fmt.Sprintf("add rule inet %s in %s saddr %s %s daddr %s tcp sport %d tcp dport %d drop",
			table, family, from.IP, family, to.IP, from.Port, to.Port)
	}
	script := strings.Join([]string{
		"add table inet " + table,
		fmt.Sprintf("add chain inet %s in { type filter hook input priority filter; policy accept; }", table),
		rule(a, b),
		rule(b, a),
	}, "\n")
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Operation not permitted") {
			required.Missing(t, "dropping a connection's packets needs root: nft: %v: %s", err, out)
		}
		t.Fatalf("nft -f -: %v: %s\n%s", err, out, script)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("nft", "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("nft delete table inet %s: %v: %s", table, err, out)
		}
	})
}
