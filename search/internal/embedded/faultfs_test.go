package embedded

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// faultMode is what happens at the chosen step.
type faultMode string

const (
	// faultFail: the step is not done and returns EIO (a write leaves half
	// of its bytes behind); later steps work.
	faultFail faultMode = "fail"
	// faultLie: the step is done but returns EIO (a rename that happened, an
	// fsync that reached the disk, a write that landed).
	faultLie faultMode = "done+error"
	// faultCrash: the process dies at the step: neither it nor anything
	// after it happens, and data not fsynced before it is lost.
	faultCrash faultMode = "crash"
)

var errCrashed = errors.New("process crashed (injected)")

// faultFS wraps the OS file system, numbers every step that changes the
// disk (open for writing, write, fsync, truncate, rename, remove, mkdir),
// and injects one fault at step target. It tracks, per file, the size known
// durable, so dropUnsynced can model a power cut: appended or written data
// not fsynced since is cut off.
type faultFS struct {
	mu     sync.Mutex
	target int
	// or: the occurrence-th step labelled targetLabel (1 = the first)
	targetLabel string
	occurrence  int
	seen        int
	mode        faultMode
	steps       []string // label of each step, in order
	fired       string   // label of the faulted step
	crashed     bool
	durable     map[string]int64 // path -> bytes known fsynced
}

func newFaultFS(target int, mode faultMode) *faultFS {
	return &faultFS{target: target, mode: mode, durable: map[string]int64{}}
}

// label names a step by the file it touches: wal.sync, snap.write,
// current.rename, dir.sync, meta.write, ...
func label(op, path string) string {
	base := filepath.Base(path)
	kind := "dir"
	switch {
	case strings.HasPrefix(base, "wal-"):
		kind = "wal"
	case strings.HasPrefix(base, "snap-"):
		kind = "snap"
	case strings.HasPrefix(base, "hnsw-"):
		kind = "hnsw"
	case strings.HasPrefix(base, currentFile):
		kind = "current"
	case strings.HasPrefix(base, "meta.json"):
		kind = "meta"
	}
	return kind + "." + op
}

// step decides the fate of one step: run it (do), run it and report an
// error (lie), or fail it.
func (f *faultFS) step(op, path string) (do bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return false, errCrashed
	}
	l := label(op, path)
	f.steps = append(f.steps, l)
	hit := len(f.steps) == f.target
	if f.targetLabel != "" && l == f.targetLabel {
		f.seen++
		hit = f.seen == f.occurrence
	}
	if !hit {
		return true, nil
	}
	f.fired = l
	switch f.mode {
	case faultCrash:
		f.crashed = true
		return false, errCrashed
	case faultLie:
		return true, &fs.PathError{Op: op, Path: path, Err: syscall.EIO}
	}
	return false, &fs.PathError{Op: op, Path: path, Err: syscall.EIO}
}

// read fails once crashed (a dead process reads nothing either).
func (f *faultFS) read() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.crashed {
		return errCrashed
	}
	return nil
}

func (f *faultFS) setDurable(path string, n int64) {
	f.mu.Lock()
	f.durable[path] = n
	f.mu.Unlock()
}

// dropUnsynced cuts every file written through f back to its fsynced size.
func (f *faultFS) dropUnsynced() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for path, n := range f.durable {
		st, err := os.Stat(path)
		if err != nil || st.IsDir() || st.Size() <= n {
			continue
		}
		if err := os.Truncate(path, n); err != nil {
			return err
		}
	}
	return nil
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	writing := flag&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC) != 0
	if !writing {
		if err := f.read(); err != nil {
			return nil, err
		}
		o, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &faultFile{File: o, fs: f, path: name}, nil
	}
	do, err := f.step("open", name)
	if !do {
		return nil, err
	}
	st, statErr := os.Stat(name)
	o, oerr := os.OpenFile(name, flag, perm)
	if oerr != nil {
		return nil, oerr
	}
	f.mu.Lock()
	switch _, tracked := f.durable[name]; {
	case flag&os.O_TRUNC != 0 || errors.Is(statErr, fs.ErrNotExist):
		f.durable[name] = 0
	case !tracked && statErr == nil && !st.IsDir():
		// what an earlier process left is durable by now
		f.durable[name] = st.Size()
	}
	f.mu.Unlock()
	if err != nil {
		o.Close()
		return nil, err
	}
	return &faultFile{File: o, fs: f, path: name}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	do, err := f.step("rename", oldpath)
	if do {
		if rerr := os.Rename(oldpath, newpath); rerr != nil {
			return rerr
		}
		f.mu.Lock()
		if n, ok := f.durable[oldpath]; ok {
			f.durable[newpath] = n
			delete(f.durable, oldpath)
		} else {
			delete(f.durable, newpath)
		}
		f.mu.Unlock()
	}
	return err
}

func (f *faultFS) Remove(name string) error {
	do, err := f.step("remove", name)
	if do {
		if rerr := os.Remove(name); rerr != nil {
			return rerr
		}
	}
	return err
}

func (f *faultFS) RemoveAll(path string) error {
	do, err := f.step("removeall", path)
	if do {
		if rerr := os.RemoveAll(path); rerr != nil {
			return rerr
		}
	}
	return err
}

func (f *faultFS) MkdirAll(path string, perm fs.FileMode) error {
	do, err := f.step("mkdir", path)
	if do {
		if rerr := os.MkdirAll(path, perm); rerr != nil {
			return rerr
		}
	}
	return err
}

func (f *faultFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	return os.ReadDir(name)
}

func (f *faultFS) Stat(name string) (fs.FileInfo, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	return os.Stat(name)
}

type faultFile struct {
	*os.File
	fs   *faultFS
	path string
}

func (ff *faultFile) Read(p []byte) (int, error) {
	if err := ff.fs.read(); err != nil {
		return 0, err
	}
	return ff.File.Read(p)
}

func (ff *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := ff.fs.read(); err != nil {
		return 0, err
	}
	return ff.File.ReadAt(p, off)
}

func (ff *faultFile) Stat() (fs.FileInfo, error) {
	if err := ff.fs.read(); err != nil {
		return nil, err
	}
	return ff.File.Stat()
}

func (ff *faultFile) Write(p []byte) (int, error) {
	do, err := ff.fs.step("write", ff.path)
	if do {
		n, werr := ff.File.Write(p)
		if werr != nil {
			return n, werr
		}
		return n, err
	}
	if err != nil && !errors.Is(err, errCrashed) {
		// A failed write may still leave part of its bytes behind.
		n, _ := ff.File.Write(p[:len(p)/2])
		return n, err
	}
	return 0, err
}

func (ff *faultFile) Sync() error {
	do, err := ff.fs.step("sync", ff.path)
	if do {
		// No real fsync: durability is what this FS records, and
		// dropUnsynced enforces it.
		if st, serr := ff.File.Stat(); serr == nil && !st.IsDir() {
			ff.fs.setDurable(ff.path, st.Size())
		}
	}
	return err
}

func (ff *faultFile) Truncate(size int64) error {
	do, err := ff.fs.step("truncate", ff.path)
	if do {
		if terr := ff.File.Truncate(size); terr != nil {
			return terr
		}
		ff.fs.mu.Lock()
		if n, ok := ff.fs.durable[ff.path]; !ok || n > size {
			ff.fs.durable[ff.path] = size
		}
		ff.fs.mu.Unlock()
	}
	return err
}

// Close always closes the descriptor: a dead process's files close too.
func (ff *faultFile) Close() error { return ff.File.Close() }

func (f *faultFS) String() string {
	return fmt.Sprintf("fault %s at step %d (%s)", f.mode, f.target, f.fired)
}

// armAt faults the occurrence-th step labelled l, counted from now.
func (f *faultFS) armAt(l string, occurrence int, mode faultMode) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targetLabel, f.occurrence, f.seen, f.mode = l, occurrence, 0, mode
}
