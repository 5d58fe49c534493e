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
