package embedded

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lookalike-dev/lookalike/search/internal/store"
)

const (
	crashEnv   = "LOOKALIKE_SEARCH_CRASH_CHILD"
	crashDim   = 64
	crashModel = "crash-model"
)

func crashVector(sku string) []float32 {
	v := make([]float32, crashDim)
	h := uint32(2166136261)
	for i := range len(sku) {
		h = (h ^ uint32(sku[i])) * 16777619
	}
	for i := range v {
		h = h*1664525 + 1013904223
		v[i] = float32(h>>8)/float32(1<<24) + 0.01
	}
	return v
}

// TestCrashChild is the child process of TestKill9KeepsAcknowledgedWrites:
// it upserts forever and prints "ACK <sku>..." after each acknowledged batch.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Log("only runs as the child of TestKill9KeepsAcknowledgedWrites (not a skip: the parent runs it)")
		return
	}
	round := os.Getenv(crashEnv + "_ROUND")
	// A tiny snapshot threshold makes kills land during snapshots too.
	s, err := Open(Options{Dir: dir, SnapshotBytes: 256 << 10, ExactThreshold: 1, HNSW: graphParams})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	name := "crash__" + crashModel
	if _, err := s.CreateCollection(context.Background(), "crash", crashModel, crashDim); err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	fmt.Println("READY")
	for b := 0; ; b++ {
		var pts []store.Point
		var names []string
		for i := range 1 + b%7 {
			sku := fmt.Sprintf("r%s-b%d-i%d", round, b, i)
			pts = append(pts, store.Point{SKU: sku, Vector: crashVector(sku), Payload: map[string]any{"batch": float64(b)}})
			names = append(names, sku)
		}
		if err := s.Upsert(context.Background(), name, pts); err != nil {
			fmt.Println("ERR", err)
			os.Exit(2)
		}
		if b%5 == 4 {
			// Deletes are writes too: delete the first SKU of this batch.
			if err := s.Delete(context.Background(), name, names[0]); err != nil {
				fmt.Println("ERR", err)
				os.Exit(2)
			}
			fmt.Println("DEL", names[0])
			names = names[1:]
		}
		fmt.Println("ACK", strings.Join(names, " "))
	}
}

func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	acked := map[string]bool{}
	deleted := map[string]bool{}
	rounds := []struct {
		name  string
		after time.Duration
	}{{"early", 150 * time.Millisecond}, {"mid", 600 * time.Millisecond}, {"late", 1200 * time.Millisecond}}
	for ri, rd := range rounds {
		t.Run(rd.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
			cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s_ROUND=%d", crashEnv, ri))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1024)
			go func() {
				sc := bufio.NewScanner(out)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			deadline := time.After(rd.after)
			started := false
			acks := 0
		read:
			for {
				select {
				case l, ok := <-lines:
					if !ok {
						break read
					}
					switch {
					case l == "READY":
						started = true
					case strings.HasPrefix(l, "ERR"):
						t.Fatalf("child: %s", l)
					case strings.HasPrefix(l, "ACK "):
						acks++
						for _, s := range strings.Fields(l)[1:] {
							acked[s] = true
						}
					case strings.HasPrefix(l, "DEL "):
						sku := strings.TrimPrefix(l, "DEL ")
						deleted[sku] = true
						delete(acked, sku)
					}
				case <-deadline:
					if !started {
						deadline = time.After(100 * time.Millisecond)
						continue
					}
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					deadline = nil
				}
			}
			_ = cmd.Wait()
			if acks == 0 {
				t.Fatalf("child acknowledged nothing before the kill")
			}
			s, err := Open(Options{Dir: dir, ExactThreshold: 1, HNSW: graphParams})
			if err != nil {
				t.Fatalf("reopen after kill -9: %v", err)
			}
			defer s.Close()
			name := "crash__" + crashModel
			lost := 0
			for sku := range acked {
				p, err := s.Get(context.Background(), name, sku)
				if err != nil {
					lost++
					t.Errorf("acknowledged %s lost: %v", sku, err)
					continue
				}
				want := crashVector(sku)
				var n float64
				for _, x := range want {
					n += float64(x) * float64(x)
				}
				if math.Abs(float64(p.Vector[0])-float64(want[0])/math.Sqrt(n)) > 1e-5 {
					t.Errorf("%s vector differs after recovery", sku)
				}
			}
			for sku := range deleted {
				if _, err := s.Get(context.Background(), name, sku); err == nil {
					t.Errorf("acknowledged delete of %s undone", sku)
				}
			}
			// Every recovered point is findable by its own vector.
			probe := 0
			for sku := range acked {
				if probe == 20 {
					break
				}
				probe++
				hits, err := s.Search(context.Background(), name, store.Query{Vector: crashVector(sku), TopK: 1})
				if err != nil || len(hits) != 1 || hits[0].SKU != sku {
					t.Errorf("search by own vector of %s: %v %v", sku, hits, err)
				}
			}
			n, _ := s.Count(context.Background(), name)
			t.Logf("round %s: %d acknowledged batches this round, %d acknowledged SKUs in total, %d deleted, %d stored after restart, %d lost",
				rd.name, acks, len(acked), len(deleted), n, lost)
			if n < int64(len(acked)) {
				t.Errorf("count %d < acknowledged %d", n, len(acked))
			}
		})
	}
}

func TestTornWALTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	name := "torn__m1"
	ctx := context.Background()
	if _, err := s.CreateCollection(ctx, "torn", "m1", 4); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(ctx, name, []store.Point{{SKU: "a", Vector: []float32{1, 0, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: no Close (no snapshot), then a torn record appended.
	s.closed = true
	s.lock.Close()
	for _, c := range s.colls {
		c.wal.Close()
		c.ix.Close()
	}
	wals, _ := filepath.Glob(filepath.Join(dir, "collections", name, "wal-*.log"))
	if len(wals) != 1 {
		t.Fatalf("wal files %v", wals)
	}
	tails := []struct {
		name string
		tail []byte
	}{
		{"half header", []byte{0x10, 0x00}},
		{"header without body", []byte{0x10, 0, 0, 0, 1, 2, 3, 4}},
		{"zero-filled tail", make([]byte, 4096)},
	}
	for _, tc := range tails {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.OpenFile(wals[0], os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tc.tail)
			f.Close()
			s2, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			if _, err := s2.Get(ctx, name, "a"); err != nil {
				t.Fatalf("acknowledged point lost: %v", err)
			}
			sku := "after-" + strings.ReplaceAll(tc.name, " ", "-")
			if err := s2.Upsert(ctx, name, []store.Point{{SKU: sku, Vector: []float32{0, 1, 0, 0}}}); err != nil {
				t.Fatal(err)
			}
			// Crash again without a snapshot: the new record must follow the cut.
			s2.closed = true
			s2.lock.Close()
			for _, c := range s2.colls {
				c.wal.Close()
				c.ix.Close()
			}
			s3, err := Open(Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer s3.Close()
			if _, err := s3.Get(ctx, name, sku); err != nil {
				t.Fatalf("write after a cut tail lost: %v", err)
			}
			// Keep s3's files for the next case: close without snapshot.
			s3.closed = true
			s3.lock.Close()
			for _, c := range s3.colls {
				c.wal.Close()
				c.ix.Close()
			}
			wals, _ = filepath.Glob(filepath.Join(dir, "collections", name, "wal-*.log"))
		})
	}
}

func TestReopenKeepsAliasesAndData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(Options{Dir: dir, ExactThreshold: 1, HNSW: graphParams})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateCollection(ctx, "products", "m1", 4); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(ctx, "products", "products__m1"); err != nil {
		t.Fatal(err)
	}
	pts := []store.Point{{SKU: "a", Vector: []float32{1, 0, 0, 0}}, {SKU: "b", Vector: []float32{0, 1, 0, 0}}, {SKU: "c", Vector: []float32{0, 0, 1, 0}}}
	if err := s.Upsert(ctx, "products__m1", pts); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "products__m1", "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("a second process must not open a data dir in use")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Dir: dir, ExactThreshold: 1, HNSW: graphParams})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if c, err := s2.Alias(ctx, "products"); err != nil || c != "products__m1" {
		t.Fatalf("alias after reopen %q %v", c, err)
	}
	if n, _ := s2.Count(ctx, "products__m1"); n != 2 {
		t.Fatalf("count after reopen %d", n)
	}
	hits, err := s2.Search(ctx, "products__m1", store.Query{Vector: []float32{0, 0, 1, 0}, TopK: 5})
	if err != nil || len(hits) != 2 || hits[0].SKU != "c" {
		t.Fatalf("search after reopen %+v %v", hits, err)
	}
	// The deleted SKU comes back with a fresh upsert.
	if err := s2.Upsert(ctx, "products__m1", []store.Point{{SKU: "b", Vector: []float32{0, 1, 0, 0}}}); err != nil {
		t.Fatal(err)
	}
	hits, _ = s2.Search(ctx, "products__m1", store.Query{Vector: []float32{0, 1, 0, 0}, TopK: 1})
	if len(hits) != 1 || hits[0].SKU != "b" {
		t.Fatalf("revived sku not found: %+v", hits)
	}
}
