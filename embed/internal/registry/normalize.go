package registry

import "math"

// Normalize subtracts mean (when not nil) from v and scales v to unit L2
// length, in place. A zero vector stays zero.
func Normalize(v, mean []float32) {
	if mean != nil {
		for i := range v {
			v[i] -= mean[i]
		}
	}
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(ss))
	for i := range v {
		v[i] *= inv
	}
}
