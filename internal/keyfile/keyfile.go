// Package keyfile creates the secret files Levee generates on first start
// (the admin token, the challenge and known-client signing keys): 32
// random bytes, encoded, in a new file only its owner can read.
package keyfile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Create writes a new file at path holding encode(32 random bytes) and a
// newline, mode 0600, creating its directory (0700) if needed, and returns
// the encoded secret. It never replaces a file: when path exists (also when
// another process created it first) it returns an error for which
// errors.Is(err, fs.ErrExist) holds, and leaves the file alone. A write that
// fails removes the partial file, so that a later start does not find a
// truncated key.
func Create(path string, encode func([]byte) string) (string, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	secret := encode(raw[:])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, werr := f.WriteString(secret + "\n")
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}
