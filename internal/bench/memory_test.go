package bench

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var touchMemory = flag.Bool("touch-memory", true, "write to the machine's free memory once before BenchmarkDataPlane's rounds and each BenchmarkLoadUploads run, "+
	"so that a hypervisor that backs a VM's memory on first touch is not paid inside a measurement (docs/BENCHMARKS.md, \"Slow runs explained\")")

// touchFreeMemory writes one byte to every page of the machine's available
// memory but a margin, once, and gives it back. A VM's memory is backed by
// its host only when first written: on the 2 vCPU VMs of docs/BENCHMARKS.md a
// page written for the first time since boot, or since free page reporting
// handed it back, cost the guest about 2 s a GiB more than one written
// before, inside whatever wrote it. Written into by the page cache during a
// run, that cost landed in the server's pwrite calls: 200 uploads ran at a
// third of their speed, at four times the CPU a GiB. The line printed says
// how long the touch took a GiB (about 0.3 s when the memory was backed
// already), so a run can tell which it met.
func touchFreeMemory() {
	if !*touchMemory {
		return
	}
	avail, ok := memAvailable()
	const margin = 1 << 30
	if !ok || avail < 2*margin {
		fmt.Println("free memory not touched first: MemAvailable unknown or under 2 GiB")
		return
	}
	n := int((avail - margin) &^ (1<<21 - 1))
	start := time.Now()
	m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		fmt.Printf("free memory not touched first: %v\n", err)
		return
	}
	for off := 0; off < n; off += 4096 {
		m[off] = 1
	}
	took := time.Since(start)
	if err := syscall.Munmap(m); err != nil {
		fmt.Printf("giving the touched memory back: %v\n", err)
	}
	gib := float64(n) / (1 << 30)
	fmt.Printf("touched %.1f GiB of free memory first in %.1f s (%.2f s/GiB; about 0.3 where the host backs it already)\n",
		gib, took.Seconds(), took.Seconds()/gib)
}

// memAvailable is /proc/meminfo's MemAvailable in bytes.
func memAvailable() (int64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10, err == nil
		}
	}
	return 0, false
}
