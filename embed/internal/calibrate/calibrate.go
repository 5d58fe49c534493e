// Package calibrate computes the mean vector a model's "l2+center"
// normalisation subtracts: the mean of the model's raw (un-normalised)
// outputs over a calibration set of preprocessed tensors.
package calibrate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lookalike-dev/lookalike/embed/internal/batcher"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

// Source yields preprocessed tensors [N,...], one call per file or image.
type Source interface {
	// Next returns the next tensor, or ok=false at the end.
	Next(ctx context.Context) (t tensorv1.Tensor, name string, ok bool, err error)
}

// Mean runs every tensor of src through enc and returns the mean row and
// the number of items averaged. Items are run in chunks of at most maxBatch.
func Mean(ctx context.Context, enc batcher.Encoder, src Source, dim, maxBatch int) ([]float32, int, error) {
	sum := make([]float64, dim)
	count := 0
	for {
		t, name, ok, err := src.Next(ctx)
		if err != nil {
			return nil, 0, err
		}
		if !ok {
			break
		}
		n := t.Shape[0]
		item := len(t.Data) / n
		for off := 0; off < n; off += maxBatch {
			k := min(maxBatch, n-off)
			out, d, err := enc.Run(t.Data[off*item:(off+k)*item], k)
			if err != nil {
				return nil, 0, fmt.Errorf("embedding %s: %w", name, err)
			}
			if d != dim {
				return nil, 0, fmt.Errorf("embedding %s: rows of %d, want %d", name, d, dim)
			}
			for i, v := range out {
				sum[i%dim] += float64(v)
			}
			count += k
		}
	}
	if count == 0 {
		return nil, 0, fmt.Errorf("calibration set is empty")
	}
	mean := make([]float32, dim)
	for i := range mean {
		mean[i] = float32(sum[i] / float64(count))
	}
	return mean, count, nil
}

// TensorDir reads tensorv1 files (*.lkt) from a folder, in name order.
type TensorDir struct {
	files []string
}

// NewTensorDir lists dir's *.lkt files.
func NewTensorDir(dir string) (*TensorDir, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.lkt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return &TensorDir{files: files}, nil
}

// Next implements Source.
func (d *TensorDir) Next(context.Context) (tensorv1.Tensor, string, bool, error) {
	if len(d.files) == 0 {
		return tensorv1.Tensor{}, "", false, nil
	}
	f := d.files[0]
	d.files = d.files[1:]
	b, err := os.ReadFile(f)
	if err != nil {
		return tensorv1.Tensor{}, f, false, fmt.Errorf("reading calibration tensor: %w", err)
	}
	t, err := tensorv1.Unmarshal(b)
	if err != nil {
		return tensorv1.Tensor{}, f, false, fmt.Errorf("%s: %w", f, err)
	}
	return t, f, true, nil
}

// Preprocessor turns image bytes into a tensor (preprocessv1.Client does,
// with the model's spec).
type Preprocessor func(ctx context.Context, image []byte) (tensorv1.Tensor, error)

// ImageDir preprocesses the images (.jpg .jpeg .png .gif .webp) of a folder, in name order.
type ImageDir struct {
	files []string
	pre   Preprocessor
}

// NewImageDir lists dir's images.
func NewImageDir(dir string, pre Preprocessor) (*ImageDir, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading calibration images: %w", err)
	}
	var files []string
	for _, e := range ents {
		switch strings.ToLower(filepath.Ext(e.Name())) {
		case ".jpg", ".jpeg", ".png", ".gif", ".webp":
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	return &ImageDir{files: files, pre: pre}, nil
}

// Next implements Source.
func (d *ImageDir) Next(ctx context.Context) (tensorv1.Tensor, string, bool, error) {
	if len(d.files) == 0 {
		return tensorv1.Tensor{}, "", false, nil
	}
	f := d.files[0]
	d.files = d.files[1:]
	b, err := os.ReadFile(f)
	if err != nil {
		return tensorv1.Tensor{}, f, false, fmt.Errorf("reading calibration image: %w", err)
	}
	t, err := d.pre(ctx, b)
	if err != nil {
		return tensorv1.Tensor{}, f, false, fmt.Errorf("preprocessing %s: %w", f, err)
	}
	return t, f, true, nil
}
