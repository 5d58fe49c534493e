// Command preprocess-bench measures preprocess against libvips on one core:
// img/s of the service's pipeline (default and high-accuracy modes) and of
// `vipsthumbnail --size 224x224 --smartcrop centre` (one process for all
// files, VIPS_CONCURRENCY=1) over the same images in the same run, the
// ratios overall, JPEG-only and PNG-only (CPU time, median of rounds), and
// the mean absolute tensor error against full decode + Lanczos3.
//
//	GOMAXPROCS=1 go run ./cmd/preprocess-bench -images ../shared/catalog/images
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/disintegration/imaging"

	"github.com/lookalike-dev/lookalike/shared/benchreport"

	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"

	"github.com/lookalike-dev/lookalike/preprocess/internal/imagedecode"
	"github.com/lookalike-dev/lookalike/preprocess/internal/preprocessor"
	"github.com/lookalike-dev/lookalike/preprocess/internal/reference"
	"github.com/lookalike-dev/lookalike/preprocess/internal/turbojpeg"
)

type image struct {
	path, format string
	data         []byte
	ref          []float32
}

type mode struct {
	name string
	spec preprocessv1.Spec
	opt  preprocessor.Options
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "preprocess-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("images", "../shared/catalog/images", "folder of images to measure")
	vips := flag.String("vips", "vipsthumbnail", "vipsthumbnail binary")
	rounds := flag.Int("rounds", 3, "rounds (the median is reported)")
	minRatio := flag.Float64("min-ratio", 0, "fail (exit 1) when the default mode's overall ratio is below this")
	maxErr := flag.Float64("max-error", 0, "fail when the default mode's error is above this")
	pureGo := flag.Bool("pure-go", true, "also measure the pure-Go pipeline (no libjpeg-turbo)")
	fastIDCT := flag.Bool("fast-idct", false, "also measure the default mode with libjpeg-turbo's fast IDCT and upsampling")
	keepFreed := flag.Int("keep-freed", preprocessor.DefaultKeepFreedMemory, "freed decoder bytes the C allocator keeps (the service default; 0: glibc defaults)")
	flag.Parse()

	imgs, err := load(*dir)
	if err != nil {
		return err
	}
	fmt.Printf("preprocess-bench: %d images from %s, GOMAXPROCS=%d, libjpeg-turbo=%v\n", len(imgs), *dir, runtime.GOMAXPROCS(0), turbojpeg.Available())

	hq := preprocessv1.ImageNet()
	hq.Interpolation = "lanczos3"
	modes := []mode{
		{name: "default (bilinear)", spec: preprocessv1.ImageNet()},
		{name: "high-accuracy (lanczos3)", spec: hq},
	}
	if *fastIDCT {
		modes = append(modes, mode{name: "default + fast IDCT", spec: preprocessv1.ImageNet(), opt: preprocessor.Options{FastIDCT: true}})
	}
	if *pureGo {
		modes = append(modes, mode{name: "pure Go (no turbojpeg)", spec: preprocessv1.ImageNet(), opt: preprocessor.Options{PureGo: true}})
	}
	for i := range modes {
		modes[i].opt.KeepFreedMemory = *keepFreed
	}
	for i := range imgs {
		if imgs[i].ref, err = reference.Tensor(imgs[i].data, preprocessv1.ImageNet(), imaging.Lanczos); err != nil {
			return fmt.Errorf("reference for %s: %w", imgs[i].path, err)
		}
	}

	tmp, err := os.MkdirTemp("", "preprocess-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	sets := map[string][]image{"all": imgs}
	for _, im := range imgs {
		sets[im.format] = append(sets[im.format], im)
	}
	setNames := []string{"all", "jpeg", "png"}

	vipsRate := map[string][]float64{}
	modeRate := make([]map[string][]float64, len(modes))
	modeErr := make([]float64, len(modes))
	modeMaxErr := make([]float64, len(modes))
	modeWorst := make([]string, len(modes))
	for i := range modes {
		modeRate[i] = map[string][]float64{}
	}
	for r := 0; r < *rounds; r++ {
		for _, s := range setNames {
			if len(sets[s]) == 0 {
				continue
			}
			sec, err := timeVips(*vips, tmp, sets[s])
			if err != nil {
				return err
			}
			vipsRate[s] = append(vipsRate[s], float64(len(sets[s]))/sec)
		}
		for i, m := range modes {
			rates, meanErr, worst, wn, err := timeOurs(m, imgs)
			if err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
			for s, v := range rates {
				modeRate[i][s] = append(modeRate[i][s], v)
			}
			modeErr[i], modeMaxErr[i], modeWorst[i] = meanErr, worst, wn
		}
	}

	fmt.Printf("\n%-26s %9s %9s %9s %8s %8s %8s %10s %10s\n", "pipeline", "img/s", "jpeg/s", "png/s", "x all", "x jpeg", "x png", "mean err", "worst img")
	fmt.Printf("%-26s %9.1f %9.1f %9.1f %8s %8s %8s %10s %10s\n", "vipsthumbnail", median(vipsRate["all"]), median(vipsRate["jpeg"]), median(vipsRate["png"]), "1.00", "1.00", "1.00", "-", "-")
	var fail []string
	var rows []benchreport.Row
	goals := map[int]float64{0: 1.3, 1: 1.1}
	for i, m := range modes {
		all, jp, pn := median(modeRate[i]["all"]), median(modeRate[i]["jpeg"]), median(modeRate[i]["png"])
		ra := all / median(vipsRate["all"])
		for _, k := range []struct {
			label string
			fig   float64
			ref   string
		}{{"all", all, "all"}, {"JPEG", jp, "jpeg"}, {"PNG", pn, "png"}} {
			goal := 0.0
			if k.label == "all" {
				goal = goals[i]
			}
			rows = append(rows, benchreport.Row{Name: fmt.Sprintf("%s, %s", m.name, k.label), Figure: k.fig, Unit: "img/s (1 core)",
				Reference: "vipsthumbnail", ReferenceFigure: median(vipsRate[k.ref]), Ratio: k.fig / median(vipsRate[k.ref]), Goal: goal,
				Note: fmt.Sprintf("tensor error %.4f", modeErr[i])})
		}
		fmt.Printf("%-26s %9.1f %9.1f %9.1f %8.2f %8.2f %8.2f %10.4f %10.4f %s\n", m.name, all, jp, pn,
			ra, jp/median(vipsRate["jpeg"]), pn/median(vipsRate["png"]), modeErr[i], modeMaxErr[i], modeWorst[i])
		if i == 0 {
			if *minRatio > 0 && ra < *minRatio {
				fail = append(fail, fmt.Sprintf("default ratio %.2f < %.2f", ra, *minRatio))
			}
			if *maxErr > 0 && modeErr[i] > *maxErr {
				fail = append(fail, fmt.Sprintf("default error %.4f > %.4f", modeErr[i], *maxErr))
			}
		}
	}
	fmt.Println("\nimg/s = images per CPU-second (median of rounds); x = ratio to vipsthumbnail; err = mean |tensor - full decode + Lanczos3| in normalised units")
	benchreport.Print(os.Stdout, benchreport.Stage{Stage: "preprocess", Rows: rows})
	if len(fail) > 0 {
		return errors.New(strings.Join(fail, "; "))
	}
	return nil
}

func load(dir string) ([]image, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s (set LOOKALIKE_SHARED or -images): %w", dir, err)
	}
	var out []image
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		f := imagedecode.Sniff(b)
		if f == "" {
			continue
		}
		out = append(out, image{path: p, format: f, data: b})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no images in %s", dir)
	}
	return out, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func timeVips(bin, tmp string, set []image) (float64, error) {
	args := []string{"--size", "224x224", "--smartcrop", "centre", "-o", filepath.Join(tmp, "%s.jpg")}
	for _, im := range set {
		args = append(args, im.path)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "VIPS_CONCURRENCY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("running %s: %w: %s", bin, err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, errors.New("no rusage for vipsthumbnail")
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), nil
}

func timeOurs(m mode, imgs []image) (rates map[string]float64, meanErr, worst float64, worstName string, err error) {
	p, err := preprocessor.New(m.opt, nil)
	if err != nil {
		return nil, 0, 0, "", err
	}
	ctx := context.Background()
	secs := map[string]float64{}
	counts := map[string]int{}
	var errSum float64
	var errN int
	for _, im := range imgs { // warm-up: pools, caches, page faults
		if _, err := p.Process(ctx, im.data, m.spec); err != nil {
			return nil, 0, 0, "", fmt.Errorf("%s: %w", im.path, err)
		}
	}
	runtime.GC()
	for _, im := range imgs {
		t0 := cpuTime()
		r, err := p.Process(ctx, im.data, m.spec)
		d := (cpuTime() - t0).Seconds()
		if err != nil {
			return nil, 0, 0, "", fmt.Errorf("%s: %w", im.path, err)
		}
		secs[im.format] += d
		secs["all"] += d
		counts[im.format]++
		counts["all"]++
		t := tensorv1.Tensor{DType: tensorv1.Float32, Shape: m.spec.Shape(1), Data: r.Data}
		v, err := t.Float32s(nil)
		if err != nil {
			return nil, 0, 0, "", err
		}
		e := 0.0
		for i := range v {
			e += math.Abs(float64(v[i] - im.ref[i]))
		}
		e /= float64(len(v))
		errSum += e
		errN++
		if e > worst {
			worst, worstName = e, filepath.Base(im.path)
		}
	}
	rates = map[string]float64{}
	for k, s := range secs {
		rates[k] = float64(counts[k]) / s
	}
	return rates, errSum / float64(errN), worst, worstName, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
