package embedded

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"

	"github.com/lookalike-dev/lookalike/search/internal/store"
)

// The write-ahead log of a collection is a sequence of records:
//
//	u32 body length | u32 CRC-32C of body | body
//
// and a body is one write request: u8 op, u32 entry count, then entries.
// An upsert entry is u16 sku length, sku, u32 payload-JSON length, payload
// JSON, dim little-endian float32; a delete entry is u16 sku length, sku.
// A record is appended and fsynced before the request is acknowledged, so a
// crash loses at most an unacknowledged request, whose record is then the
// last thing in the log, cut short or never written (zeros). Replay cuts
// only such a torn tail; any other damage (a bit flipped, a bad sector mid-
// log, a complete record that fails its checksum) refuses to open, because
// dropping it would drop acknowledged writes.
const (
	opUpsert byte = 1
	opDelete byte = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxRecord bounds a record read back (a request is far smaller).
const maxRecord = 1 << 30

type walEntry struct {
	sku     string
	payload map[string]any
	vector  []float32
}

type walRecord struct {
	op      byte
	entries []walEntry
}

func encodeRecord(r walRecord) ([]byte, error) {
	body := make([]byte, 0, 64)
	body = append(body, r.op)
	body = binary.LittleEndian.AppendUint32(body, uint32(len(r.entries)))
	for _, e := range r.entries {
		if len(e.sku) > math.MaxUint16 {
			return nil, store.Invalid("sku of %d bytes is too long", len(e.sku))
		}
		body = binary.LittleEndian.AppendUint16(body, uint16(len(e.sku)))
		body = append(body, e.sku...)
		if r.op != opUpsert {
			continue
		}
		pj, err := json.Marshal(e.payload)
		if err != nil {
			return nil, store.Invalid("payload of %q is not JSON: %v", e.sku, err)
		}
		body = binary.LittleEndian.AppendUint32(body, uint32(len(pj)))
		body = append(body, pj...)
		for _, f := range e.vector {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(f))
		}
	}
	out := make([]byte, 8, 8+len(body))
	binary.LittleEndian.PutUint32(out[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(out[4:], crc32.Checksum(body, castagnoli))
	return append(out, body...), nil
}

var errCorrupt = errors.New("corrupt record")

func decodeBody(body []byte, dim int) (walRecord, error) {
	var r walRecord
	if len(body) < 5 {
		return r, errCorrupt
	}
	r.op = body[0]
	n := binary.LittleEndian.Uint32(body[1:])
	p := body[5:]
	take := func(k int) ([]byte, bool) {
		if len(p) < k {
			return nil, false
		}
		b := p[:k]
		p = p[k:]
		return b, true
	}
	for range n {
		lb, ok := take(2)
		if !ok {
			return r, errCorrupt
		}
		sb, ok := take(int(binary.LittleEndian.Uint16(lb)))
		if !ok {
			return r, errCorrupt
		}
		e := walEntry{sku: string(sb)}
		switch r.op {
		case opDelete:
		case opUpsert:
			lb, ok := take(4)
			if !ok {
				return r, errCorrupt
			}
			pj, ok := take(int(binary.LittleEndian.Uint32(lb)))
			if !ok {
				return r, errCorrupt
			}
			if err := json.Unmarshal(pj, &e.payload); err != nil {
				return r, errCorrupt
			}
			vb, ok := take(4 * dim)
			if !ok {
				return r, errCorrupt
			}
			e.vector = make([]float32, dim)
			for i := range e.vector {
				e.vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(vb[4*i:]))
			}
		default:
			return r, errCorrupt
		}
		r.entries = append(r.entries, e)
	}
	if len(p) != 0 {
		return r, errCorrupt
	}
	return r, nil
}

// maxTornTail bounds the bytes read back to judge a damaged tail; a torn
// tail is one unfinished request, far smaller.
const maxTornTail = 256 << 20

// errCorruptWAL marks a log that holds damage other than a torn tail.
var errCorruptWAL = errors.New("corrupt write-ahead log")

// replayWAL applies every record of path and returns the offset after the
// last one; torn reports a torn tail after it (the caller truncates there).
// Damage that is not a torn tail is an error wrapping errCorruptWAL.
func replayWAL(fsys FS, path string, dim int, apply func(walRecord) error) (good int64, torn bool, err error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, false, fmt.Errorf("opening wal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("reading wal: %w", err)
	}
	size := st.Size()
	br := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	for good < size {
		rest := size - good
		if rest < 8 {
			return tail(f, path, good, size, dim)
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return good, false, fmt.Errorf("reading wal at %d: %w", good, err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:]))
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n > maxRecord || 8+n > rest {
			return tail(f, path, good, size, dim)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return good, false, fmt.Errorf("reading wal at %d: %w", good, err)
		}
		if crc32.Checksum(body, castagnoli) != sum {
			return tail(f, path, good, size, dim)
		}
		rec, err := decodeBody(body, dim)
		if err != nil {
			return tail(f, path, good, size, dim)
		}
		if err := apply(rec); err != nil {
			return good, false, fmt.Errorf("applying wal record at %d: %w", good, err)
		}
		good += 8 + n
	}
	return good, false, nil
}

// tail judges the damaged bytes from off to the end of the log: a torn
// tail when they are all zeros, or a record cut short by the end of the file
// with no intact record anywhere after its start; otherwise corruption.
func tail(f File, path string, off, size int64, dim int) (int64, bool, error) {
	rest := size - off
	corrupt := func(why string) (int64, bool, error) {
		return off, false, fmt.Errorf("%w %s: %s at offset %d, %d bytes before the end: refusing to open so that no "+
			"acknowledged write after it is dropped (the files are kept; restore the data dir, or cut the log at "+
			"that offset, e.g. truncate -s %d, to accept losing every write after it)", errCorruptWAL, path, why, off, rest, off)
	}
	if rest > maxTornTail {
		return corrupt("damaged record")
	}
	b := make([]byte, rest)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return off, false, fmt.Errorf("reading wal tail at %d: %w", off, err)
	}
	zeros := true
	for _, x := range b {
		if x != 0 {
			zeros = false
			break
		}
	}
	if zeros {
		return off, true, nil
	}
	if rest >= 8 {
		n := int64(binary.LittleEndian.Uint32(b[0:]))
		if 8+n <= rest {
			return corrupt("complete record failing its checksum")
		}
	}
	// A flipped length looks like a record cut short; the intact records
	// after it tell them apart. Checking costs CRCs: past a budget, refuse.
	budget := 8 * rest
	for i := 1; i+13 <= len(b); i++ {
		intact, cost := intactRecordAt(b[i:], dim)
		if intact {
			return corrupt(fmt.Sprintf("damaged record header (an intact record follows at offset %d)", off+int64(i)))
		}
		if budget -= cost; budget < 0 {
			return corrupt("damaged record too long to tell from a torn tail")
		}
	}
	return off, true, nil
}

// intactRecordAt reports whether b starts with a record that passes every
// check, and the bytes checksummed to find out.
func intactRecordAt(b []byte, dim int) (bool, int64) {
	n := int(binary.LittleEndian.Uint32(b[0:]))
	if n < 5 || n > len(b)-8 || (b[8] != opUpsert && b[8] != opDelete) {
		return false, 1
	}
	body := b[8 : 8+n]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return false, int64(n)
	}
	_, err := decodeBody(body, dim)
	return err == nil, int64(n)
}
