// Package store is levee's embedded persistent store: one SQLite file in the
// data directory (pure-Go driver, WAL mode) holding the runtime state that
// must survive a restart, such as bans and runtime rules.
//
// Open never replaces, truncates or repairs an existing file. A file that is
// not a levee store, is damaged, or was written by a newer levee is refused
// with an error that names the file, says what is wrong and what to do.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrCorrupt is wrapped by Open's error when the file exists but is not a
// readable levee store.
var ErrCorrupt = errors.New("store file is damaged or not a levee store")

// Store is an open store. All methods are safe for concurrent use. The zero
// value is not usable; call Open.
type Store struct {
	db   *sql.DB
	path string
	log  *slog.Logger
}

// busyTimeout is how long a statement waits for another writer.
const busyTimeout = 5 * time.Second

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// Open opens the store at path, creating the file (mode 0600) and its
// directory (mode 0700) if they do not exist, checks its integrity and brings
// its schema up to date. logger may be nil.
func Open(path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("store: open: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: open %s: the path may not contain '?' or '#'", path)
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}

	dsn := path + "?_pragma=busy_timeout(" + fmt.Sprint(busyTimeout.Milliseconds()) + ")&_txlock=immediate&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &Store{db: db, path: path, log: logger}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil || !strings.EqualFold(mode, "wal") {
		db.Close()
		if err == nil {
			err = fmt.Errorf("journal mode is %q", mode)
		}
		return nil, fmt.Errorf("store: open %s: enable WAL mode: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	logger.Info("store opened", "path", path)
	return s, nil
}

// prepareFile creates the directory and an empty file if needed, and checks
// that an existing file is accessible and looks like an SQLite database,
// without changing it.
func prepareFile(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("store: create data directory %s: %w (check that levee may write to its parent, or choose another data directory)", dir, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("store: open %s: %w: levee (uid %d) needs read and write access to the file and to its directory %s (for the -wal and -shm files); fix the owner or mode", path, err, os.Geteuid(), dir)
		}
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: stat %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("store: open %s: is a directory, want a file path", path)
	}
	if fi.Size() == 0 {
		return nil // new store
	}
	head := make([]byte, 100)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("store: read %s: %w", path, err)
	}
	if n < len(head) {
		return corrupt(path, fmt.Sprintf("the file is only %d bytes, shorter than an SQLite header", fi.Size()))
	}
	if !bytes.HasPrefix(head, sqliteHeader) {
		return corrupt(path, fmt.Sprintf("the file (%d bytes) does not start with the SQLite header", fi.Size()))
	}
	return nil
}

func corrupt(path, what string) error {
	return fmt.Errorf("store: %s: %w: %s. Levee has not changed the file. Move it aside (for example: mv %s %s.bad) to start with an empty store, or restore it from a backup", path, ErrCorrupt, what, path, path)
}

// check runs PRAGMA quick_check and turns damage into an ErrCorrupt error.
func (s *Store) check(ctx context.Context) error {
	rows, err := s.db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return s.openErr(err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var msg string
		if err := rows.Scan(&msg); err != nil {
			return s.openErr(err)
		}
		if msg != "ok" && len(problems) < 3 {
			problems = append(problems, msg)
		}
	}
	if err := rows.Err(); err != nil {
		return s.openErr(err)
	}
	if len(problems) > 0 {
		return corrupt(s.path, "integrity check failed: "+strings.Join(problems, "; "))
	}
	return nil
}

// openErr classifies an SQLite error met while opening.
func (s *Store) openErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			return corrupt(s.path, err.Error())
		case sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY:
			return fmt.Errorf("store: open %s: %w: check that levee may read and write the file and its directory", s.path, err)
		}
	}
	return fmt.Errorf("store: open %s: %w", s.path, err)
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close closes the database. The store must not be used afterwards.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// unixNano stores a time as Unix nanoseconds; the zero time is 0.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
