package searchv1

import (
	"encoding/json"
	"testing"
)

func TestVectorJSON(t *testing.T) {
	tests := []struct {
		name, in string
		want     Vector
		wantErr  bool
	}{
		{"array", `[1, -2.5, 0]`, Vector{1, -2.5, 0}, false},
		{"base64", `"AACAPwAAIMA="`, Vector{1, -2.5}, false},
		{"bad base64", `"!!"`, nil, true},
		{"not float32 length", `"AAA="`, nil, true},
		{"object", `{}`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v Vector
			err := json.Unmarshal([]byte(tc.in), &v)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if len(v) != len(tc.want) {
				t.Fatalf("got %v, want %v", v, tc.want)
			}
			for i := range v {
				if v[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", v, tc.want)
				}
			}
			b, _ := json.Marshal(v)
			var back Vector
			if err := json.Unmarshal(b, &back); err != nil || len(back) != len(v) || back[len(v)-1] != v[len(v)-1] {
				t.Fatalf("round trip: %s -> %v (%v)", b, back, err)
			}
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{{"products", true}, {"mobilenetv2-int8-v1", true}, {"", false}, {"Products", false}, {"a/b", false}, {"-x", false}}
	for _, tc := range tests {
		if got := ValidName(tc.in); got != tc.ok {
			t.Errorf("ValidName(%q) = %v", tc.in, got)
		}
	}
	if got := CollectionName("products", "m-v1"); got != "products__m-v1" {
		t.Errorf("CollectionName = %q", got)
	}
}
