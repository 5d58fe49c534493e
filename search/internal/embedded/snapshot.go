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
	"path/filepath"
)

// A snapshot holds every slot of a collection (dead ones too, so slot
// numbers stay the labels of the saved HNSW graph):
//
//	"LKSNAP1\n" | u32 dim | u32 slots | per slot: u8 live, u16 sku length,
//	sku, u32 payload-JSON length, payload JSON, dim float32 | u32 CRC-32C
//
// It is written to a temporary file, fsynced and renamed into place.
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

// writeSnapshot writes the slots of c (the caller holds the writer lock).
func writeSnapshot(path string, c *collection) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("creating snapshot: %w", err)
	}
	defer os.Remove(tmp)
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
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("installing snapshot: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// readSnapshot loads the slots of a snapshot into c.
func readSnapshot(path string, c *collection) error {
	f, err := os.Open(path)
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("opening dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing dir %s: %w", dir, err)
	}
	return nil
}

// writeFileAtomic writes data to path via a fsynced temporary file and rename.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("installing %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}
