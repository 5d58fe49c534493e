package main

import "testing"

func TestSingleModelDefault(t *testing.T) {
	tests := []struct {
		name   string
		env    string // EMBED_DEFAULT_MODEL
		def    string
		models []string
		want   string
	}{
		{"every spec: built-in default", "", builtinDefaultModel, nil, builtinDefaultModel},
		{"one model: it is the default", "", builtinDefaultModel, []string{"mobilenetv2-int8-logits-v1"}, "mobilenetv2-int8-logits-v1"},
		{"two models: built-in default", "", builtinDefaultModel, []string{"a", "b"}, builtinDefaultModel},
		{"configured default wins", "x-v1", "x-v1", []string{"mobilenetv2-int8-logits-v1"}, "x-v1"},
		{"flag default wins", "", "y-v1", []string{"mobilenetv2-int8-logits-v1"}, "y-v1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("EMBED_DEFAULT_MODEL", tc.env)
			cfg := config{DefaultModel: tc.def, Models: tc.models}
			singleModelDefault(&cfg)
			if cfg.DefaultModel != tc.want {
				t.Errorf("default %q, want %q", cfg.DefaultModel, tc.want)
			}
		})
	}
}
