// Package paired compares two sides measured in interleaved windows (A, B,
// B, A, ...), the way to compare throughputs on a machine whose speed
// drifts: this VM's runs slow down or speed up by 20-30% for tens of
// seconds, so two measurements taken minutes apart (or the best of a few
// each) differ by more than the effect looked for. Windows a few seconds
// long, taken in turn, see the same drift; the ratio of each adjacent pair
// cancels it, and many pairs show how far one pair is to be trusted.
package paired

import (
	"fmt"
	"slices"
)

// Summary compares side A with side B (the reference) over paired windows.
type Summary struct {
	Pairs int `json:"pairs"`
	// Ratio is A's throughput over B's, each over all its windows together.
	Ratio float64 `json:"ratio"`
	// Median, Q1 and Q3 are those of the pairs' own ratios; Min and Max
	// their extremes.
	Median float64 `json:"median"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// Window is one side's count of answered requests over seconds.
type Window struct {
	Answered int
	Seconds  float64
}

// Compare pairs a[i] with b[i]. Pairs where either side answered nothing
// or took no time are left out (a failed window tells nothing of speed).
func Compare(a, b []Window) (Summary, error) {
	if len(a) != len(b) {
		return Summary{}, fmt.Errorf("paired: %d windows against %d", len(a), len(b))
	}
	var s Summary
	var ratios []float64
	var na, nb int
	var sa, sb float64
	for i := range a {
		if a[i].Answered <= 0 || b[i].Answered <= 0 || a[i].Seconds <= 0 || b[i].Seconds <= 0 {
			continue
		}
		ratios = append(ratios, (float64(a[i].Answered)/a[i].Seconds)/(float64(b[i].Answered)/b[i].Seconds))
		na, nb = na+a[i].Answered, nb+b[i].Answered
		sa, sb = sa+a[i].Seconds, sb+b[i].Seconds
	}
	if len(ratios) == 0 {
		return Summary{}, fmt.Errorf("paired: no pair with answers on both sides")
	}
	slices.Sort(ratios)
	s.Pairs = len(ratios)
	s.Ratio = (float64(na) / sa) / (float64(nb) / sb)
	s.Median, s.Q1, s.Q3 = quantile(ratios, 0.5), quantile(ratios, 0.25), quantile(ratios, 0.75)
	s.Min, s.Max = ratios[0], ratios[len(ratios)-1]
	return s, nil
}

// quantile of sorted v, interpolating linearly between order statistics
// (R's type 7, the usual default).
func quantile(v []float64, q float64) float64 {
	h := q * float64(len(v)-1)
	i := int(h)
	if i+1 >= len(v) {
		return v[len(v)-1]
	}
	return v[i] + (h-float64(i))*(v[i+1]-v[i])
}
