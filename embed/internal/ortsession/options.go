// Package ortsession runs ONNX models with ONNX Runtime through
// github.com/yalue/onnxruntime_go. It is the only package of the embed
// service that uses cgo; built with CGO_ENABLED=0 it compiles to a stub whose
// constructors return ErrNoCgo, so everything else builds and tests without it.
package ortsession

import (
	"errors"
	"fmt"
	"log/slog"
)

// Execution providers.
const (
	ProviderAuto     = "auto"
	ProviderTensorRT = "tensorrt"
	ProviderCUDA     = "cuda"
	ProviderCPU      = "cpu"
)

// ErrNoCgo is returned by every constructor of a binary built without cgo.
var ErrNoCgo = errors.New("built without cgo: ONNX Runtime is unavailable (build with CGO_ENABLED=1)")

// ValidateProvider checks a provider name.
func ValidateProvider(p string) error {
	switch p {
	case ProviderAuto, ProviderTensorRT, ProviderCUDA, ProviderCPU:
		return nil
	}
	return fmt.Errorf("unknown execution provider %q (want auto, tensorrt, cuda or cpu)", p)
}

// Candidates lists the providers to try, in order, for a requested one:
// auto tries TensorRT, then CUDA, then CPU; any other name is tried alone.
func Candidates(p string) []string {
	if p == ProviderAuto || p == "" {
		return []string{ProviderTensorRT, ProviderCUDA, ProviderCPU}
	}
	return []string{p}
}

// SessionOptions configure one model session.
type SessionOptions struct {
	// Provider is auto, tensorrt, cuda or cpu.
	Provider string
	// DeviceID is the GPU for cuda and tensorrt.
	DeviceID int
	// IntraOpThreads and InterOpThreads: 0 leaves ONNX Runtime's default.
	IntraOpThreads int
	InterOpThreads int
	// Spinning lets ORT's idle intra/inter-op threads spin. Off by default:
	// a service shares its cores with request handling, and spinning threads
	// then steal them.
	Spinning bool
	// TensorRTCacheDir, when set, enables TensorRT's engine cache there.
	TensorRTCacheDir string

	// InputName is the graph input fed with the batch.
	InputName string
	// InputDType is float32, float16 or uint8.
	InputDType string
	// InputShape is one item's shape, without the batch dimension.
	InputShape []int64
	// OutputName is the graph output read back (float32).
	OutputName string

	Log *slog.Logger
}

func (o SessionOptions) validate() error {
	if err := ValidateProvider(o.Provider); o.Provider != "" && err != nil {
		return err
	}
	if o.InputName == "" || o.OutputName == "" {
		return errors.New("session options need an input and an output name")
	}
	if len(o.InputShape) == 0 {
		return errors.New("session options need the per-item input shape")
	}
	for _, d := range o.InputShape {
		if d < 1 {
			return fmt.Errorf("input shape %v must be static apart from the batch", o.InputShape)
		}
	}
	if elemSize(o.InputDType) == 0 {
		return fmt.Errorf("input dtype %q is not float32, float16 or uint8", o.InputDType)
	}
	return nil
}

func elemSize(dtype string) int {
	switch dtype {
	case "float32", "":
		return 4
	case "float16":
		return 2
	case "uint8":
		return 1
	}
	return 0
}

// ItemBytes is the byte size of one input item.
func (o SessionOptions) ItemBytes() int {
	n := elemSize(o.InputDType)
	for _, d := range o.InputShape {
		n *= int(d)
	}
	return n
}

// AutoThreads resolves the thread settings a zero value leaves to us:
// intra-op threads 0 becomes 1, and the CPU workers (concurrent inferences
// when the model runs on the CPU) become cpus/intra, at least 1. Measured on
// 2 cores with MobileNetV2: two single-threaded inferences at once give
// 1.3-1.4x the images/s of one inference on two threads, whose per-operator
// barriers stall whenever request handling takes a core.
func AutoThreads(intra, cpus int) (intraOut, cpuWorkers int) {
	if intra <= 0 {
		intra = 1
	}
	return intra, max(1, cpus/intra)
}
