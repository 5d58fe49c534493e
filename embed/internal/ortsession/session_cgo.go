//go:build cgo

package ortsession

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"
)

// Runtime is the process's ONNX Runtime environment. Create one per process.
type Runtime struct {
	libPath string
}

// NewRuntime loads the ONNX Runtime shared library at libPath and
// initializes its environment.
func NewRuntime(libPath string) (*Runtime, error) {
	if libPath == "" {
		return nil, errors.New("loading ONNX Runtime: no library path (set ONNXRUNTIME_LIB)")
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return nil, fmt.Errorf("loading ONNX Runtime %s: %w", libPath, err)
	}
	if ort.IsInitialized() {
		return nil, errors.New("loading ONNX Runtime: the environment is already initialized in this process")
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, fmt.Errorf("loading ONNX Runtime %s: %w", abs, err)
	}
	return &Runtime{libPath: abs}, nil
}

// Version is the loaded library's version.
func (r *Runtime) Version() string { return ort.GetVersion() }

// Close tears the environment down; close every session first.
func (r *Runtime) Close() error {
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("closing ONNX Runtime: %w", err)
	}
	return nil
}

// Session runs one model. Run is safe for concurrent use.
type Session struct {
	s        *ort.DynamicAdvancedSession
	opts     SessionOptions
	provider string
	dtype    ort.TensorElementDataType
}

// NewSession creates a session for the ONNX model bytes, trying the
// providers Candidates(o.Provider) names in order. With auto, a provider that
// cannot be set up is logged and the next one is tried; a provider named
// explicitly that cannot be set up is an error.
func (r *Runtime) NewSession(model []byte, o SessionOptions) (*Session, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	for _, p := range Candidates(o.Provider) {
		s, err := newSession(model, o, p)
		if err == nil {
			log.Info("onnx runtime session created", "provider", p, "requested", o.Provider, "output", o.OutputName)
			return s, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
		log.Warn("execution provider unavailable", "provider", p, "requested", o.Provider, "err", err)
	}
	return nil, fmt.Errorf("creating ONNX Runtime session: %w", errors.Join(errs...))
}

func newSession(model []byte, o SessionOptions, provider string) (*Session, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	defer so.Destroy()
	if err := setSpinning(so, o.Spinning); err != nil {
		return nil, err
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("intra-op threads: %w", err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return nil, fmt.Errorf("inter-op threads: %w", err)
		}
	}
	switch provider {
	case ProviderTensorRT:
		if err := appendTensorRT(so, o); err != nil {
			return nil, err
		}
		// CUDA runs what TensorRT does not take.
		if err := appendCUDA(so, o); err != nil {
			return nil, err
		}
	case ProviderCUDA:
		if err := appendCUDA(so, o); err != nil {
			return nil, err
		}
	case ProviderCPU:
	default:
		return nil, ValidateProvider(provider)
	}
	s, err := ort.NewDynamicAdvancedSessionWithONNXData(model, []string{o.InputName}, []string{o.OutputName}, so)
	if err != nil {
		return nil, err
	}
	return &Session{s: s, opts: o, provider: provider, dtype: dtypeOf(o.InputDType)}, nil
}

func appendCUDA(so *ort.SessionOptions, o SessionOptions) error {
	co, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return fmt.Errorf("cuda provider options: %w", err)
	}
	defer co.Destroy()
	if err := co.Update(map[string]string{"device_id": fmt.Sprint(o.DeviceID)}); err != nil {
		return fmt.Errorf("cuda provider options: %w", err)
	}
	if err := so.AppendExecutionProviderCUDA(co); err != nil {
		return fmt.Errorf("cuda provider: %w", err)
	}
	return nil
}

func appendTensorRT(so *ort.SessionOptions, o SessionOptions) error {
	to, err := ort.NewTensorRTProviderOptions()
	if err != nil {
		return fmt.Errorf("tensorrt provider options: %w", err)
	}
	defer to.Destroy()
	opts := map[string]string{"device_id": fmt.Sprint(o.DeviceID)}
	if o.TensorRTCacheDir != "" {
		opts["trt_engine_cache_enable"] = "1"
		opts["trt_engine_cache_path"] = o.TensorRTCacheDir
	}
	if err := to.Update(opts); err != nil {
		return fmt.Errorf("tensorrt provider options: %w", err)
	}
	if err := so.AppendExecutionProviderTensorRT(to); err != nil {
		return fmt.Errorf("tensorrt provider: %w", err)
	}
	return nil
}

// Provider is the execution provider the session runs on.
func (s *Session) Provider() string { return s.provider }

// ItemBytes is the byte size of one input item.
func (s *Session) ItemBytes() int { return s.opts.ItemBytes() }

// Run feeds n items, given as their little-endian bytes back to back, and
// returns the output flattened to n rows, with the row length.
func (s *Session) Run(input []byte, n int) ([]float32, int, error) {
	if n < 1 || len(input) != n*s.opts.ItemBytes() {
		return nil, 0, fmt.Errorf("running model: %d bytes is not %d items of %d bytes", len(input), n, s.opts.ItemBytes())
	}
	shape := append(ort.Shape{int64(n)}, s.opts.InputShape...)
	in, err := ort.NewCustomDataTensor(shape, input, s.dtype)
	if err != nil {
		return nil, 0, fmt.Errorf("running model: input tensor: %w", err)
	}
	defer in.Destroy()
	outs := []ort.Value{nil}
	if err := s.s.Run([]ort.Value{in}, outs); err != nil {
		return nil, 0, fmt.Errorf("running model: %w", err)
	}
	defer outs[0].Destroy()
	t, ok := outs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, 0, fmt.Errorf("running model: output %q is %T, want a float32 tensor", s.opts.OutputName, outs[0])
	}
	data := t.GetData()
	if len(data)%n != 0 || len(data) == 0 {
		return nil, 0, fmt.Errorf("running model: output of %d values does not split into %d rows", len(data), n)
	}
	return data, len(data) / n, nil
}

// Close frees the session.
func (s *Session) Close() error {
	if err := s.s.Destroy(); err != nil {
		return fmt.Errorf("closing session: %w", err)
	}
	return nil
}

func setSpinning(so *ort.SessionOptions, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	for _, k := range []string{"session.intra_op.allow_spinning", "session.inter_op.allow_spinning"} {
		if err := so.AddSessionConfigEntry(k, v); err != nil {
			return fmt.Errorf("session option %s: %w", k, err)
		}
	}
	return nil
}
