//go:build linux

package limit

import (
	"syscall"
	"unsafe"
)

// MADV_HUGEPAGE and MADV_COLLAPSE (Linux 6.1+), the same numbers on every
// Linux architecture.
const (
	madvHugepage = 14
	madvCollapse = 25
)

// adviseHugePages asks Linux to back the bucket array with transparent huge
// pages. A lookup touches one random bucket, so with 4 KiB pages nearly every
// check of a large table also misses the TLB; 2 MiB pages remove most of
// those misses. MADV_HUGEPAGE alone only helps pages faulted later; memory
// the Go heap reuses is already mapped with small pages, so MADV_COLLAPSE
// then asks the kernel to collapse the range into huge pages right away
// (tens of milliseconds for 64 MiB, once, in New). It is advice only: with
// THP disabled or an older kernel it changes nothing, and errors are
// ignored. The kernel applies it to the 2 MiB-aligned part of the array.
func adviseHugePages(b []bucket) {
	const huge = 2 << 20
	if len(b)*bucketBytes < 2*huge {
		return
	}
	mem := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(b))), len(b)*bucketBytes)
	start := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	lo := int((start+huge-1)&^(huge-1) - start)
	hi := int((start+uintptr(len(mem)))&^(huge-1) - start)
	if hi <= lo {
		return
	}
	_ = syscall.Madvise(mem[lo:hi], madvHugepage)
	_ = syscall.Madvise(mem[lo:hi], madvCollapse)
}
