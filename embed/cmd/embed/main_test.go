package main

import "testing"

func TestSharedEnvFallback(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		modelDir  string
		wantModel string
		wantLib   string
	}{
		{"defaults stay", nil, "../shared/models", "../shared/models", ".cache/onnxruntime/libonnxruntime.so.1"},
		{"project-wide variables", map[string]string{"MODEL_DIR": "/m", "ONNXRUNTIME_LIB": "/l.so"}, "../shared/models", "/m", "/l.so"},
		{"EMBED_ variable wins", map[string]string{"MODEL_DIR": "/m", "EMBED_MODEL_DIR": "/e"}, "/e", "/e", ".cache/onnxruntime/libonnxruntime.so.1"},
		{"a flag wins", map[string]string{"MODEL_DIR": "/m"}, "/flag", "/flag", ".cache/onnxruntime/libonnxruntime.so.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"MODEL_DIR", "ONNXRUNTIME_LIB", "EMBED_MODEL_DIR", "EMBED_ORT_LIB"} {
				t.Setenv(k, "")
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := config{ModelDir: tc.modelDir, ORTLib: ".cache/onnxruntime/libonnxruntime.so.1"}
			sharedEnvFallback(&cfg)
			if cfg.ModelDir != tc.wantModel || cfg.ORTLib != tc.wantLib {
				t.Errorf("got %q %q, want %q %q", cfg.ModelDir, cfg.ORTLib, tc.wantModel, tc.wantLib)
			}
		})
	}
}

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
