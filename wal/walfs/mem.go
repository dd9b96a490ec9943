package walfs

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
)

// Op names a file operation, for fault injection.
type Op int

// The operations a Fault hook sees.
const (
	OpCreate Op = iota
	OpWrite
	OpSync // Sync and Datasync
	OpRead
	OpTruncate
	OpRemove
	OpSyncDir
	OpRename // Recycle
)

// String names the operation.
func (o Op) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpWrite:
		return "write"
	case OpSync:
		return "sync"
	case OpRead:
		return "read"
	case OpTruncate:
		return "truncate"
	case OpRemove:
		return "remove"
	case OpSyncDir:
		return "syncdir"
	case OpRename:
		return "rename"
	}
	return fmt.Sprintf("op(%d)", int(o))
}

// Fault decides whether an operation fails. It is called with the Mem lock
// held, so it must not call back into the Mem. A nil error lets the
// operation proceed.
type Fault func(op Op, name string) error

// Mem is an in-memory FS with an explicit durability model, for tests:
//
//   - a file's bytes are durable up to its synced length (set by Sync,
//     Datasync and Truncate); later bytes are lost, torn or zeroed by Crash;
//   - a preallocated file (Preallocate) also has durable zeros up to its
//     preallocated size: writes replace them from the start, and bytes
//     that Crash drops read as those zeros again; a recycled file
//     (Recycle) likewise keeps its old bytes under the new ones;
//   - a created name is durable only after SyncDir of its directory, and a
//     removed name comes back after a Crash unless SyncDir followed;
//   - SetCapacity makes writes fail with ErrNoSpace once the total size of
//     all files would exceed it (the bytes that fit are written, as a real
//     short write would);
//   - SetFault fails chosen operations.
//
// Mem is safe for concurrent use.
type Mem struct {
	mu       sync.Mutex
	files    map[string]*memFile // live names
	durable  map[string]*memFile // names that survive a crash
	dirs     map[string]bool
	capacity int64 // 0 = unlimited
	fault    Fault
}

type memFile struct {
	data   []byte
	synced int // bytes [0, synced) are durable
	// under is a recycled file's old content: the file reads as data,
	// then under's bytes beyond it. They are durable.
	under []byte
	// zeroTo is the preallocated size: the file reads as data (and
	// under), then zeros up to zeroTo. The zeros are durable.
	zeroTo int
}

// content returns the bytes the file reads as.
func (f *memFile) content() []byte {
	out := make([]byte, f.size())
	copy(out, f.under)
	copy(out, f.data)
	return out
}

// size is the file's length.
func (f *memFile) size() int { return max(len(f.data), len(f.under), f.zeroTo) }

// spare is what the file holds beyond its data: space that writes take
// without growing it.
func (f *memFile) spare() int { return max(len(f.under), f.zeroTo) - len(f.data) }

// restore makes b, the bytes at offset off that a crash dropped, read as
// what was there before they were written: old bytes or zeros.
func (f *memFile) restore(b []byte, off int) {
	clear(b)
	if off < len(f.under) {
		copy(b, f.under[off:])
	}
}

// NewMem returns an empty in-memory FS.
func NewMem() *Mem {
	return &Mem{files: map[string]*memFile{}, durable: map[string]*memFile{}, dirs: map[string]bool{"/": true, ".": true}}
}

// SetCapacity limits the total bytes of all files; 0 removes the limit.
func (m *Mem) SetCapacity(bytes int64) {
	m.mu.Lock()
	m.capacity = bytes
	m.mu.Unlock()
}

// SetFault installs f (nil removes it).
func (m *Mem) SetFault(f Fault) {
	m.mu.Lock()
	m.fault = f
	m.mu.Unlock()
}

func (m *Mem) check(op Op, name string) error {
	if m.fault == nil {
		return nil
	}
	if err := m.fault(op, name); err != nil {
		return &os.PathError{Op: op.String(), Path: name, Err: err}
	}
	return nil
}

func (m *Mem) usedLocked() int64 {
	var n int64
	for _, f := range m.files {
		n += int64(f.size())
	}
	return n
}

// Create implements FS.
func (m *Mem) Create(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpCreate, name); err != nil {
		return nil, err
	}
	if !m.dirs[path.Dir(name)] {
		return nil, &os.PathError{Op: "create", Path: name, Err: fs.ErrNotExist}
	}
	f := &memFile{}
	m.files[name] = f
	return &memHandle{m: m, name: name, f: f}, nil
}

// Preallocate implements Preallocator. It makes the whole file at once,
// then calls pace once, with size, and drops the file if pace fails. The
// OpCreate, OpWrite and OpSync faults apply to it, in that order, as the
// three steps it stands for.
func (m *Mem) Preallocate(name string, size int64, pace func(int64) error) error {
	if err := m.preallocate(name, size); err != nil {
		return err
	}
	if pace != nil {
		if err := pace(size); err != nil {
			m.mu.Lock()
			delete(m.files, name)
			m.mu.Unlock()
			return err
		}
	}
	return nil
}

func (m *Mem) preallocate(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, op := range []Op{OpCreate, OpWrite, OpSync} {
		if err := m.check(op, name); err != nil {
			return err
		}
	}
	if !m.dirs[path.Dir(name)] {
		return &os.PathError{Op: "create", Path: name, Err: fs.ErrNotExist}
	}
	old := int64(0)
	if f, ok := m.files[name]; ok {
		old = int64(f.size())
	}
	if m.capacity > 0 && m.usedLocked()-old+size > m.capacity {
		return &os.PathError{Op: "preallocate", Path: name, Err: ErrNoSpace}
	}
	m.files[name] = &memFile{zeroTo: int(size)}
	return nil
}

// Adopt implements Preallocator. The OpCreate fault applies to name.
func (m *Mem) Adopt(spare, name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpCreate, name); err != nil {
		return nil, err
	}
	f, ok := m.files[spare]
	if !ok {
		return nil, &os.PathError{Op: "rename", Path: spare, Err: fs.ErrNotExist}
	}
	if len(f.data) > 0 {
		return nil, &os.PathError{Op: "adopt", Path: spare, Err: fs.ErrInvalid}
	}
	if !m.dirs[path.Dir(name)] {
		return nil, &os.PathError{Op: "rename", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, spare)
	m.files[name] = f
	return &memHandle{m: m, name: name, f: f}, nil
}

// Recycle implements Preallocator: the file, which must be fully synced,
// keeps its bytes as old content that a later Adopt writes over. Mem has
// no hard links, so it never fails with ErrLinked. The OpRename fault
// applies to name.
func (m *Mem) Recycle(name, free string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRename, name); err != nil {
		return err
	}
	return m.recycleLocked(name, free)
}

// Reclaim implements Preallocator as Recycle does; a name in Mem is always
// its file's only link. The OpRename fault applies to name, before accept
// is called.
func (m *Mem) Reclaim(name, free string, n int, accept func(head []byte) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRename, name); err != nil {
		return err
	}
	f, ok := m.files[name]
	if !ok {
		return &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	c := f.content()
	if err := accept(c[:min(n, len(c))]); err != nil {
		return err
	}
	return m.recycleLocked(name, free)
}

func (m *Mem) recycleLocked(name, free string) error {
	f, ok := m.files[name]
	if !ok {
		return &os.PathError{Op: "rename", Path: name, Err: fs.ErrNotExist}
	}
	if f.synced < len(f.data) || !m.dirs[path.Dir(free)] {
		return &os.PathError{Op: "recycle", Path: name, Err: fs.ErrInvalid}
	}
	// The same file under the new name, as a rename keeps the inode: a
	// crash before SyncDir finds it under the old name, with the same
	// bytes.
	f.under, f.data, f.synced, f.zeroTo = f.content(), nil, 0, 0
	delete(m.files, name)
	m.files[free] = f
	return nil
}

// ReadFile implements FS.
func (m *Mem) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRead, name); err != nil {
		return nil, err
	}
	f, ok := m.files[name]
	if !ok {
		return nil, &os.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return f.content(), nil
}

// Truncate implements FS.
func (m *Mem) Truncate(name string, size int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpTruncate, name); err != nil {
		return err
	}
	f, ok := m.files[name]
	if !ok {
		return &os.PathError{Op: "truncate", Path: name, Err: fs.ErrNotExist}
	}
	if size < 0 || size > int64(f.size()) {
		return &os.PathError{Op: "truncate", Path: name, Err: fs.ErrInvalid}
	}
	data := f.content()[:size:size]
	f.data, f.under = data, nil
	f.synced, f.zeroTo = int(size), 0
	return nil
}

// Remove implements FS.
func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpRemove, name); err != nil {
		return err
	}
	if _, ok := m.files[name]; !ok {
		return &os.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

// List implements FS.
func (m *Mem) List(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = path.Clean(dir)
	if !m.dirs[dir] {
		return nil, &os.PathError{Op: "list", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for name := range m.files {
		if path.Dir(name) == dir {
			names = append(names, path.Base(name))
		}
	}
	sort.Strings(names)
	return names, nil
}

// MkdirAll implements FS. Directories are durable at once.
func (m *Mem) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := path.Clean(dir); ; d = path.Dir(d) {
		m.dirs[d] = true
		if d == "/" || d == "." || !strings.Contains(d, "/") {
			break
		}
	}
	return nil
}

// SyncDir implements FS: the live names of dir become the durable ones.
func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(OpSyncDir, dir); err != nil {
		return err
	}
	dir = path.Clean(dir)
	for name := range m.durable {
		if path.Dir(name) == dir {
			delete(m.durable, name)
		}
	}
	for name, f := range m.files {
		if path.Dir(name) == dir {
			m.durable[name] = f
		}
	}
	return nil
}

// Crash returns the FS a restarted process would find after a power cut:
// only durable names, each with its synced bytes plus, chosen by rng, a
// prefix of its unsynced bytes in which a run may be zeroed (a page that
// never reached the disk while a later one did). With rng nil every
// unsynced byte is dropped.
func (m *Mem) Crash(rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := NewMem()
	for d := range m.dirs {
		c.dirs[d] = true
	}
	names := make([]string, 0, len(m.durable))
	for name := range m.durable {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic use of rng
	for _, name := range names {
		f := m.durable[name]
		keep := f.synced
		if rng != nil && len(f.data) > f.synced {
			keep += rng.IntN(len(f.data) - f.synced + 1)
		}
		data := append([]byte(nil), f.data[:keep]...)
		if rng != nil && keep > f.synced && rng.IntN(2) == 0 {
			from := f.synced + rng.IntN(keep-f.synced)
			to := from + rng.IntN(keep-from+1)
			f.restore(data[from:to], from)
		}
		nf := &memFile{data: data, synced: len(data), under: f.under, zeroTo: f.zeroTo}
		c.files[name] = nf
		c.durable[name] = nf
	}
	return c
}

type memHandle struct {
	m      *Mem
	name   string
	f      *memFile
	closed bool
}

func (h *memHandle) Write(p []byte) (int, error) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.closed {
		return 0, &os.PathError{Op: "write", Path: h.name, Err: fs.ErrClosed}
	}
	if err := h.m.check(OpWrite, h.name); err != nil {
		return 0, err
	}
	n := len(p)
	var err error
	if h.m.capacity > 0 {
		// Writes over preallocated zeros or old bytes take no new space.
		free := h.m.capacity - h.m.usedLocked() + int64(max(h.f.spare(), 0))
		if int64(n) > free {
			n = int(max(free, 0))
			err = &os.PathError{Op: "write", Path: h.name, Err: ErrNoSpace}
		}
	}
	h.f.data = append(h.f.data, p[:n]...)
	return n, err
}

func (h *memHandle) sync() error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	if h.closed {
		return &os.PathError{Op: "sync", Path: h.name, Err: fs.ErrClosed}
	}
	if err := h.m.check(OpSync, h.name); err != nil {
		return err
	}
	h.f.synced = len(h.f.data)
	return nil
}

func (h *memHandle) Sync() error     { return h.sync() }
func (h *memHandle) Datasync() error { return h.sync() }

func (h *memHandle) Close() error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	h.closed = true
	return nil
}
