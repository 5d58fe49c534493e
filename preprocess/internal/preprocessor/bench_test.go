package preprocessor

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
)

// BenchmarkProcessCatalog preprocesses the catalog photos (one op = all of
// them) in each mode; `make bench-preprocess` compares with libvips.
//
//	GOMAXPROCS=1 go test -run '^$' -bench ProcessCatalog ./internal/preprocessor/
func BenchmarkProcessCatalog(b *testing.B) {
	d := os.Getenv("LOOKALIKE_SHARED")
	if d == "" {
		d = filepath.Join("..", "..", "..", "..", "shared")
	}
	dir := filepath.Join(d, "catalog", "images")
	ents, err := os.ReadDir(dir)
	if err != nil {
		b.Fatalf("catalog not found (set LOOKALIKE_SHARED): %v", err)
	}
	var imgs [][]byte
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		if imagedecode.Sniff(data) != "" {
			imgs = append(imgs, data)
		}
	}
	hq := preprocessv1.ImageNet()
	hq.Interpolation = "lanczos3"
	for _, m := range []struct {
		name string
		spec preprocessv1.Spec
		opt  Options
	}{
		{"default", preprocessv1.ImageNet(), Options{}},
		{"high-accuracy", hq, Options{}},
		{"pure-go", preprocessv1.ImageNet(), Options{PureGo: true}},
	} {
		b.Run(m.name, func(b *testing.B) {
			p, err := New(m.opt, nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				for _, data := range imgs {
					if _, err := p.Process(context.Background(), data, m.spec); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N*len(imgs))/b.Elapsed().Seconds(), "img/s")
		})
	}
}
