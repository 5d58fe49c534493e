package ortsession

import (
	"slices"
	"testing"
)

func TestCandidates(t *testing.T) {
	tests := []struct {
		provider string
		want     []string
		valid    bool
	}{
		{ProviderAuto, []string{ProviderTensorRT, ProviderCUDA, ProviderCPU}, true},
		{"", []string{ProviderTensorRT, ProviderCUDA, ProviderCPU}, false},
		{ProviderTensorRT, []string{ProviderTensorRT}, true},
		{ProviderCUDA, []string{ProviderCUDA}, true},
		{ProviderCPU, []string{ProviderCPU}, true},
		{"rocm", []string{"rocm"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.provider, func(t *testing.T) {
			if got := Candidates(tc.provider); !slices.Equal(got, tc.want) {
				t.Errorf("Candidates(%q) = %v, want %v", tc.provider, got, tc.want)
			}
			if err := ValidateProvider(tc.provider); (err == nil) != tc.valid {
				t.Errorf("ValidateProvider(%q) = %v", tc.provider, err)
			}
		})
	}
}

func TestItemBytes(t *testing.T) {
	tests := []struct {
		dtype string
		want  int
	}{
		{"float32", 4 * 3 * 224 * 224},
		{"float16", 2 * 3 * 224 * 224},
		{"uint8", 3 * 224 * 224},
	}
	for _, tc := range tests {
		o := SessionOptions{InputDType: tc.dtype, InputShape: []int64{3, 224, 224}}
		if got := o.ItemBytes(); got != tc.want {
			t.Errorf("%s: ItemBytes = %d, want %d", tc.dtype, got, tc.want)
		}
	}
}
