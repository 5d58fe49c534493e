//go:build cgo

package ortsession

import (
	"fmt"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

// BareThroughput is the reference for benchmarks: a plain onnxruntime_go
// AdvancedSession with input and output tensors allocated once, run back to
// back on the same batch for at least dur (and at least 3 runs). It returns
// images per second. Providers and threads come from o as for NewSession.
func (r *Runtime) BareThroughput(model []byte, o SessionOptions, input []byte, batch int, dur time.Duration) (float64, string, error) {
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
	// Bind an output of the graph's rank: logits are [N,dim], the tapped
	// pooled features [N,dim,1,1].
	var s *ort.AdvancedSession
	var lastErr error
	for _, shape := range []ort.Shape{ort.NewShape(int64(batch), int64(dim)), ort.NewShape(int64(batch), int64(dim), 1, 1)} {
		outT, err := ort.NewEmptyTensor[float32](shape)
		if err != nil {
			return 0, "", fmt.Errorf("bare output tensor: %w", err)
		}
		defer outT.Destroy()
		sess, err := ort.NewAdvancedSessionWithONNXData(model, []string{o.InputName}, []string{o.OutputName}, []ort.Value{in}, []ort.Value{outT}, so)
		if err != nil {
			return 0, "", fmt.Errorf("bare session: %w", err)
		}
		if lastErr = sess.Run(); lastErr == nil {
			s = sess
			break
		}
		_ = sess.Destroy()
	}
	if s == nil {
		return 0, "", fmt.Errorf("bare run: %w", lastErr)
	}
	defer s.Destroy()
	runs := 0
	start := time.Now()
	for runs < 3 || time.Since(start) < dur {
		if err := s.Run(); err != nil {
			return 0, "", fmt.Errorf("bare run: %w", err)
		}
		runs++
	}
	return float64(runs*batch) / time.Since(start).Seconds(), provider, nil
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
