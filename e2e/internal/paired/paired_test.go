package paired

import (
	"math"
	"testing"
)

func TestCompare(t *testing.T) {
	w := func(n int, s float64) Window { return Window{Answered: n, Seconds: s} }
	tests := []struct {
		name    string
		a, b    []Window
		want    Summary
		wantErr bool
	}{
		{
			// The machine halves its speed for the second pair: both sides
			// see it, and each pair's ratio stays 0.9.
			name: "drift cancels",
			a:    []Window{w(90, 1), w(45, 1)},
			b:    []Window{w(100, 1), w(50, 1)},
			want: Summary{Pairs: 2, Ratio: 0.9, Median: 0.9, Q1: 0.9, Q3: 0.9, Min: 0.9, Max: 0.9},
		},
		{
			name: "spread",
			a:    []Window{w(80, 1), w(90, 1), w(100, 1), w(110, 1)},
			b:    []Window{w(100, 1), w(100, 1), w(100, 1), w(100, 1)},
			want: Summary{Pairs: 4, Ratio: 0.95, Median: 0.95, Q1: 0.875, Q3: 1.025, Min: 0.8, Max: 1.1},
		},
		{
			name: "a failed window is left out",
			a:    []Window{w(0, 1), w(90, 2)},
			b:    []Window{w(100, 1), w(100, 2)},
			want: Summary{Pairs: 1, Ratio: 0.9, Median: 0.9, Q1: 0.9, Q3: 0.9, Min: 0.9, Max: 0.9},
		},
		{name: "lengths differ", a: []Window{w(1, 1)}, wantErr: true},
		{name: "nothing answered", a: []Window{w(0, 1)}, b: []Window{w(0, 1)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Compare(tc.a, tc.b)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if tc.wantErr {
				return
			}
			near := func(x, y float64) bool { return math.Abs(x-y) < 1e-9 }
			if got.Pairs != tc.want.Pairs || !near(got.Ratio, tc.want.Ratio) || !near(got.Median, tc.want.Median) ||
				!near(got.Q1, tc.want.Q1) || !near(got.Q3, tc.want.Q3) || !near(got.Min, tc.want.Min) || !near(got.Max, tc.want.Max) {
				t.Fatalf("Compare = %+v, want %+v", got, tc.want)
			}
		})
	}
}
