package embedded

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A snapshot holds every slot of a collection (dead ones too, so slot
// numbers stay the labels of the saved HNSW graph):
//
//	"LKSNAP1\n" | u32 dim | u32 slots | per slot: u8 live, u16 sku length,
//	sku, u32 payload-JSON length, payload JSON, dim float32 | u32 CRC-32C
//
// It is written and fsynced before CURRENT names its generation.
const snapMagic = "LKSNAP1\n"

type crcWriter struct {
	w   io.Writer
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc = crc32.Update(c.crc, castagnoli, p)
	return c.w.Write(p)
}

type crcReader struct {
	r   io.Reader
	crc uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// writeSnapshot writes the slots of c to path and fsyncs it (the caller
// holds the writer lock). The file belongs to an uncommitted generation until
// the CURRENT pointer names it, so it is written in place.
func writeSnapshot(fsys FS, path string, c *collection) error {
	f, err := fsys.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := &crcWriter{w: bw}
	var b []byte
	b = append(b, snapMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(c.dim))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.skus)))
	if _, err := cw.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	for s := range c.skus {
		b = b[:0]
		if c.live[s] {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(len(c.skus[s])))
		b = append(b, c.skus[s]...)
		pj, err := json.Marshal(c.payloads[s])
		if err != nil {
			f.Close()
			return fmt.Errorf("encoding payload of %q: %w", c.skus[s], err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pj)))
		b = append(b, pj...)
		for _, x := range c.vector(s) {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
		if _, err := cw.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("writing snapshot: %w", err)
		}
	}
	if err := binary.Write(bw, binary.LittleEndian, cw.crc); err != nil {
		f.Close()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing snapshot: %w", err)
	}
	return nil
}

// readSnapshot loads the slots of a snapshot into c.
func readSnapshot(fsys FS, path string, c *collection) error {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("opening snapshot: %w", err)
	}
	defer f.Close()
	cr := &crcReader{r: bufio.NewReaderSize(f, 1<<20)}
	hdr := make([]byte, len(snapMagic)+8)
	if _, err := io.ReadFull(cr, hdr); err != nil || string(hdr[:len(snapMagic)]) != snapMagic {
		return fmt.Errorf("snapshot %s: bad header", path)
	}
	dim := int(binary.LittleEndian.Uint32(hdr[len(snapMagic):]))
	n := int(binary.LittleEndian.Uint32(hdr[len(snapMagic)+4:]))
	if dim != c.dim {
		return fmt.Errorf("snapshot %s: dim %d, collection dim %d", path, dim, c.dim)
	}
	vb := make([]byte, 4*dim)
	var small [6]byte
	for s := range n {
		if _, err := io.ReadFull(cr, small[:3]); err != nil {
			return fmt.Errorf("snapshot %s slot %d: %w", path, s, err)
		}
		live := small[0] == 1
		sku := make([]byte, binary.LittleEndian.Uint16(small[1:3]))
		if _, err := io.ReadFull(cr, sku); err != nil {
			return fmt.Errorf("snapshot %s slot %d: %w", path, s, err)
		}
		if _, err := io.ReadFull(cr, small[:4]); err != nil {
			return fmt.Errorf("snapshot %s slot %d: %w", path, s, err)
		}
		pj := make([]byte, binary.LittleEndian.Uint32(small[:4]))
		if _, err := io.ReadFull(cr, pj); err != nil {
			return fmt.Errorf("snapshot %s slot %d: %w", path, s, err)
		}
		var payload map[string]any
		if err := json.Unmarshal(pj, &payload); err != nil {
			return fmt.Errorf("snapshot %s slot %d payload: %w", path, s, err)
		}
		if _, err := io.ReadFull(cr, vb); err != nil {
			return fmt.Errorf("snapshot %s slot %d: %w", path, s, err)
		}
		slot := c.newSlot(string(sku))
		v := c.vector(slot)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(vb[4*i:]))
		}
		c.payloads[slot] = payload
		if live {
			c.live[slot] = true
			c.nLive++
		}
	}
	want := cr.crc
	var got uint32
	if err := binary.Read(f2(cr), binary.LittleEndian, &got); err != nil {
		return fmt.Errorf("snapshot %s: missing checksum: %w", path, err)
	}
	if got != want {
		return errors.New("snapshot " + path + ": checksum mismatch")
	}
	return nil
}

// f2 reads the trailer past the checksummed part.
func f2(cr *crcReader) io.Reader { return cr.r }

// CURRENT names the committed generation of a collection:
//
//	"LKGEN1 <gen> <CRC-32C of "LKGEN1 <gen>", 8 hex digits>\n"
//
// Replacing it (writeFileAtomic) is the one commit point of a snapshot:
// files of any other generation are either superseded or never committed.
const (
	currentFile  = "CURRENT"
	currentMagic = "LKGEN1"
)

func encodeCurrent(gen uint64) []byte {
	head := fmt.Sprintf("%s %d", currentMagic, gen)
	return fmt.Appendf(nil, "%s %08x\n", head, crc32.Checksum([]byte(head), castagnoli))
}

// readCurrent returns the committed generation; ok is false when dir has no
// CURRENT (a collection written before it existed).
func readCurrent(fsys FS, dir string) (gen uint64, ok bool, err error) {
	path := filepath.Join(dir, currentFile)
	b, err := readFile(fsys, path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("reading %s: %w", path, err)
	}
	f := strings.Fields(string(b))
	if len(f) == 3 && f[0] == currentMagic {
		g, gerr := strconv.ParseUint(f[1], 10, 64)
		sum, serr := strconv.ParseUint(f[2], 16, 32)
		head := currentMagic + " " + f[1]
		if gerr == nil && serr == nil && uint32(sum) == crc32.Checksum([]byte(head), castagnoli) {
			return g, true, nil
		}
	}
	return 0, false, fmt.Errorf("%s is damaged (%q): refusing to guess which generation is committed; the files are kept", path, b)
}
