//go:build unix

package shield

import (
	"fmt"
	"os"
	"syscall"
)

// writable reports why this process may not create files in dir.
func writable(dir string) error {
	if err := syscall.Access(dir, 0x2|0x1); err != nil { // W_OK|X_OK
		return fmt.Errorf("%s is not writable by uid %d: %w", dir, os.Geteuid(), err)
	}
	return nil
}
