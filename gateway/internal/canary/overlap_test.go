package canary

import "testing"

func TestOverlapAtK(t *testing.T) {
	ten := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	tests := []struct {
		name string
		a, b []string
		k    int
		want float64
	}{
		{"identical", ten, ten, 10, 1},
		{"same set other order", ten, []string{"j", "i", "h", "g", "f", "e", "d", "c", "b", "a"}, 10, 1},
		{"disjoint", ten, []string{"k", "l", "m", "n", "o", "p", "q", "r", "s", "t"}, 10, 0},
		{"seven of ten", ten, []string{"a", "b", "c", "d", "e", "f", "g", "x", "y", "z"}, 10, 0.7},
		{"only the top k count", append(append([]string{}, ten...), "z"), []string{"z", "a", "b", "c", "d", "e", "f", "g", "h", "i"}, 10, 0.9},
		{"k larger than the lists", []string{"a", "b"}, []string{"b", "c"}, 10, 0.5},
		{"short against long", []string{"a"}, ten, 10, 0.1},
		{"both empty", nil, nil, 10, 1},
		{"one empty", nil, ten, 10, 0},
		{"duplicates count once", []string{"a", "a", "b"}, []string{"a", "c", "d"}, 3, 1.0 / 3},
		{"k of zero", ten, ten, 0, 0},
		{"k of one", []string{"a", "b"}, []string{"a", "c"}, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := OverlapAtK(tc.a, tc.b, tc.k)
			if d := got - tc.want; d > 1e-9 || d < -1e-9 {
				t.Fatalf("OverlapAtK = %v, want %v", got, tc.want)
			}
			if back := OverlapAtK(tc.b, tc.a, tc.k); tc.name != "duplicates count once" && (back-got > 1e-9 || got-back > 1e-9) {
				t.Fatalf("not symmetric: %v vs %v", got, back)
			}
		})
	}
}
