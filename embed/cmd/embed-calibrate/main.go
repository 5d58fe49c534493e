// Command embed-calibrate computes the mean vector for a model's
// "l2+center" normalisation: the mean raw output of the model over a
// calibration set, written as a tensorv1 float32 [dim] file (the spec's
// mean_file). The set is a folder of images sent to a running preprocess
// service with the model's preprocessing spec (-images, -preprocess-url), or
// a folder of tensorv1 files (-tensors).
//
//	embed-calibrate -model mobilenetv2-int8-centered-v1 -images ../shared/catalog/images \
//	    -preprocess-url http://127.0.0.1:8081 -out embed/models/mobilenetv2-int8-centered-v1.mean.lkt
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"

	"github.com/lookalike-dev/lookalike/embed/internal/calibrate"
	"github.com/lookalike-dev/lookalike/embed/internal/modelspec"
	"github.com/lookalike-dev/lookalike/embed/internal/ortsession"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/tensorv1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "embed-calibrate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	env := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	ortLib := flag.String("ort-lib", env("ONNXRUNTIME_LIB", ".cache/onnxruntime/libonnxruntime.so.1"), "ONNX Runtime library")
	specDir := flag.String("models-dir", "embed/models", "model spec folder")
	modelDir := flag.String("model-dir", env("MODEL_DIR", "../shared/models"), "model file folder")
	model := flag.String("model", "", "model id whose raw outputs are averaged (required)")
	images := flag.String("images", "", "folder of calibration images (needs -preprocess-url)")
	preURL := flag.String("preprocess-url", "http://127.0.0.1:8081", "preprocess service for -images")
	tensors := flag.String("tensors", "", "folder of tensorv1 files (*.lkt) instead of images")
	out := flag.String("out", "", "mean file to write (required)")
	flag.Parse()
	if *model == "" || *out == "" || (*images == "") == (*tensors == "") {
		flag.Usage()
		return fmt.Errorf("need -model, -out, and one of -images or -tensors")
	}

	specs, err := modelspec.ReadDir(*specDir)
	if err != nil {
		return err
	}
	var spec modelspec.Spec
	for _, s := range specs {
		if s.ID == *model {
			spec = s
		}
	}
	if spec.ID == "" {
		return fmt.Errorf("no spec for model %q in %s", *model, *specDir)
	}
	// The mean is of raw outputs: load without centring (the mean file may not exist yet).
	spec.Normalization, spec.MeanFile = modelspec.NormL2, ""
	l, err := modelspec.Load(spec, *modelDir)
	if err != nil {
		return err
	}
	rt, err := ortsession.NewRuntime(*ortLib)
	if err != nil {
		return err
	}
	defer rt.Close()
	sess, err := rt.NewSession(l.ONNX, ortsession.OptionsFor(l, ortsession.SessionOptions{Provider: ortsession.ProviderAuto, IntraOpThreads: runtime.NumCPU()}))
	if err != nil {
		return err
	}
	defer sess.Close()

	var src calibrate.Source
	if *tensors != "" {
		if src, err = calibrate.NewTensorDir(*tensors); err != nil {
			return err
		}
	} else {
		client := &preprocessv1.Client{BaseURL: *preURL}
		pre := func(ctx context.Context, img []byte) (tensorv1.Tensor, error) {
			t, _, err := client.Preprocess(ctx, img, &spec.Preprocess)
			return t, err
		}
		if src, err = calibrate.NewImageDir(*images, pre); err != nil {
			return err
		}
	}
	mean, n, err := calibrate.Mean(ctx, sess, src, spec.Dim, 32)
	if err != nil {
		return err
	}
	if err := modelspec.WriteMean(*out, mean); err != nil {
		return err
	}
	fmt.Printf("wrote the mean of %d items (%d-d) of %s to %s\n", n, spec.Dim, spec.ID, *out)
	return nil
}
