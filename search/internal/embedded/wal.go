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
// crash loses at most an unacknowledged request: replay stops at the first
// torn or corrupt record and truncates the log there.
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

// replayWAL applies every intact record of path and returns the offset after
// the last one (the caller truncates a torn tail there).
func replayWAL(path string, dim int, apply func(walRecord) error) (good int64, torn bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, fmt.Errorf("opening wal: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return good, false, nil
			}
			return good, true, nil
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		sum := binary.LittleEndian.Uint32(hdr[4:])
		if n > maxRecord {
			return good, true, nil
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return good, true, nil
		}
		if crc32.Checksum(body, castagnoli) != sum {
			return good, true, nil
		}
		rec, err := decodeBody(body, dim)
		if err != nil {
			return good, true, nil
		}
		if err := apply(rec); err != nil {
			return good, false, fmt.Errorf("applying wal record at %d: %w", good, err)
		}
		good += 8 + int64(n)
	}
}
