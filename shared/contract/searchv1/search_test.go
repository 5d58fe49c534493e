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
		{"base64 with an escape", `"AACAPwAAIMA\u003d"`, Vector{1, -2.5}, false},
		{"bad base64", `"!!"`, nil, true},
		{"bad base64 escaped", `"\u0021!"`, nil, true},
		{"not base64 bytes", `"AACAPéAAIMA="`, nil, true},
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
			if b[0] != '"' {
				t.Fatalf("encoded as %s, want a base64 string", b)
			}
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

// BenchmarkVectorJSON encodes and decodes a request carrying a 1280-d
// vector, as the gateway and search do once per query.
func BenchmarkVectorJSON(b *testing.B) {
	v := make(Vector, 1280)
	for i := range v {
		v[i] = float32(i) / 7
	}
	req := SearchRequest{Model: "m-v1", Vector: v, TopK: 10}
	b.ReportAllocs()
	for b.Loop() {
		buf, err := json.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		var back SearchRequest
		if err := json.Unmarshal(buf, &back); err != nil || len(back.Vector) != len(v) {
			b.Fatalf("round trip: %v", err)
		}
	}
}
