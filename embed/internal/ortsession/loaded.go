package ortsession

import "github.com/lookalike-dev/lookalike/embed/internal/modelspec"

// OptionsFor fills base (provider, threads) with a loaded model's input and output.
func OptionsFor(l modelspec.Loaded, base SessionOptions) SessionOptions {
	base.InputName = l.Spec.Input.Name
	base.InputDType = l.Spec.Input.DType
	base.InputShape = append([]int64(nil), l.Spec.Input.Shape[1:]...)
	base.OutputName = l.OutputName
	return base
}
