package localfs

import (
	"bytes"
	"io/fs"
	"os"
	"path"
	"strconv"
)

// The sizes of localfs's writes (Options.WriteSize). Every chunk is copied
// through one pooled buffer of this size and written one full buffer at a
// time, so it is also the memory a chunk in flight holds.
const (
	// LargeWrite is the default. The kernel gives larger writes to a new
	// file larger page-cache folios, and its copy costs less per byte: a
	// bare handler filling 128 KiB before each write spent ~1.3× the CPU
	// per GiB of one writing each socket read, in 256 KiB 1.04×, in
	// 512 KiB 1.00×, in 1 MiB 0.93× (docs/BENCHMARKS.md, "Write size and
	// the VM's free page reporting"). 512 KiB takes most of the gain for
	// half the memory of 1 MiB per chunk in flight.
	LargeWrite = 512 << 10
	// SmallWrite is chosen where the kernel hands freed memory back to a
	// hypervisor (free page reporting). It reports only large free
	// blocks, and large folios are carved from exactly those, so a large
	// write keeps landing on memory the host has taken back and pays for
	// it again; large writes then cost 2–5× the CPU of 128 KiB ones.
	SmallWrite = 128 << 10

	minWriteSize = 4 << 10
	maxWriteSize = 16 << 20
)

// DefaultWriteSize is the write size for this machine: SmallWrite if its
// kernel reports free pages to a hypervisor, LargeWrite otherwise.
func DefaultWriteSize() int {
	return writeSizeFor(os.DirFS("/sys"))
}

func writeSizeFor(sys fs.FS) int {
	if freePageReporting(sys) {
		return SmallWrite
	}
	return LargeWrite
}

// virtio's device id of a memory balloon, and the balloon's feature bit
// for free page reporting (VIRTIO_BALLOON_F_REPORTING).
const (
	virtioBalloon           = "0x0005"
	balloonFeatureReporting = 5
	// maxPageOrder is the largest block the kernel's page allocator
	// keeps on x86-64 and arm64 with 4 KiB pages (MAX_PAGE_ORDER).
	maxPageOrder = 10
)

// freePageReporting tells whether the kernel behind sys (its /sys) reports
// free pages to a hypervisor: a virtio balloon offers the feature, and the
// page_reporting module has not been told to report only blocks larger
// than any the kernel has (page_reporting_order above maxPageOrder, the
// way to turn it off at run time). Anything it cannot read counts as no.
func freePageReporting(sys fs.FS) bool {
	devices, _ := fs.Glob(sys, "bus/virtio/devices/*")
	offered := false
	for _, dev := range devices {
		id, err := fs.ReadFile(sys, path.Join(dev, "device"))
		if err != nil || string(bytes.TrimSpace(id)) != virtioBalloon {
			continue
		}
		features, err := fs.ReadFile(sys, path.Join(dev, "features"))
		if err == nil && len(features) > balloonFeatureReporting && features[balloonFeatureReporting] == '1' {
			offered = true
		}
	}
	if !offered {
		return false
	}
	order, err := fs.ReadFile(sys, "module/page_reporting/parameters/page_reporting_order")
	if err != nil {
		return true
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(order)))
	return err != nil || n <= maxPageOrder
}
