//go:build !linux

package limit

// adviseHugePages is a no-op where transparent huge pages do not exist.
func adviseHugePages([]bucket) {}
