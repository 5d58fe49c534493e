//go:build cgo

package ortsession

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// BareThroughput is the reference for benchmarks: a plain onnxruntime_go
// AdvancedSession with input and output tensors allocated once, run back to
// back on the same batch for at least dur (and at least 3 runs). It returns
// images per second. Providers and threads come from o as for NewSession.
// parallel > 1 runs that many such sessions at once, each from its own
// goroutine (the reference for a service with several inference workers).
func (r *Runtime) BareThroughput(model []byte, o SessionOptions, input []byte, batch, parallel int, dur time.Duration) (float64, string, error) {
	parallel = max(parallel, 1)
	// Learn the output shape with a dynamic session first.
	probe, err := r.NewSession(model, o)
	if err != nil {
		return 0, "", err
	}
	provider := probe.Provider()
	_, dim, err := probe.Run(input, batch)
	_ = probe.Close()
	if err != nil {
		return 0, "", err
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return 0, "", fmt.Errorf("bare session options: %w", err)
	}
	defer so.Destroy()
	if err := setSpinning(so, o.Spinning); err != nil {
		return 0, "", err
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return 0, "", err
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return 0, "", err
		}
	}
	switch provider {
	case ProviderTensorRT:
		if err := appendTensorRT(so, o); err != nil {
			return 0, "", err
		}
		if err := appendCUDA(so, o); err != nil {
			return 0, "", err
		}
	case ProviderCUDA:
		if err := appendCUDA(so, o); err != nil {
			return 0, "", err
		}
	}
	in, err := ort.NewCustomDataTensor(append(ort.Shape{int64(batch)}, o.InputShape...), input, dtypeOf(o.InputDType))
	if err != nil {
		return 0, "", fmt.Errorf("bare input tensor: %w", err)
	}
	defer in.Destroy()
	sessions := make([]*ort.AdvancedSession, parallel)
	for i := range sessions {
		s, out, err := bareSession(model, o, so, in, batch, dim)
		if err != nil {
			return 0, "", err
		}
		defer out.Destroy()
		defer s.Destroy()
		sessions[i] = s
	}
	var runs atomic.Int64
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 3 || time.Since(start) < dur; n++ {
				if err := s.Run(); err != nil {
					errs[i] = fmt.Errorf("bare run: %w", err)
					return
				}
				runs.Add(1)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, "", err
	}
	return float64(runs.Load()*int64(batch)) / time.Since(start).Seconds(), provider, nil
}

// bareSession binds in and an output of the graph's rank: logits are
// [N,dim], the tapped pooled features [N,dim,1,1].
func bareSession(model []byte, o SessionOptions, so *ort.SessionOptions, in ort.Value, batch, dim int) (*ort.AdvancedSession, *ort.Tensor[float32], error) {
	var lastErr error
	for _, shape := range []ort.Shape{ort.NewShape(int64(batch), int64(dim)), ort.NewShape(int64(batch), int64(dim), 1, 1)} {
		outT, err := ort.NewEmptyTensor[float32](shape)
		if err != nil {
			return nil, nil, fmt.Errorf("bare output tensor: %w", err)
		}
		sess, err := ort.NewAdvancedSessionWithONNXData(model, []string{o.InputName}, []string{o.OutputName}, []ort.Value{in}, []ort.Value{outT}, so)
		if err != nil {
			_ = outT.Destroy()
			return nil, nil, fmt.Errorf("bare session: %w", err)
		}
		if lastErr = sess.Run(); lastErr == nil {
			return sess, outT, nil
		}
		_ = sess.Destroy()
		_ = outT.Destroy()
	}
	return nil, nil, fmt.Errorf("bare run: %w", lastErr)
}

func dtypeOf(d string) ort.TensorElementDataType {
	switch d {
	case "float16":
		return ort.TensorElementDataTypeFloat16
	case "uint8":
		return ort.TensorElementDataTypeUint8
	}
	return ort.TensorElementDataTypeFloat
}
