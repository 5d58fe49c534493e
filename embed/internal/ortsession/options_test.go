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

func TestAutoThreads(t *testing.T) {
	tests := []struct {
		intra, cpus, wantIntra, wantWorkers int
	}{
		{0, 2, 1, 2},
		{0, 16, 1, 16},
		{2, 2, 2, 1},
		{4, 2, 4, 1},
		{3, 8, 3, 2},
		{0, 0, 1, 1},
	}
	for _, tt := range tests {
		i, w := AutoThreads(tt.intra, tt.cpus)
		if i != tt.wantIntra || w != tt.wantWorkers {
			t.Errorf("AutoThreads(%d, %d) = %d, %d; want %d, %d", tt.intra, tt.cpus, i, w, tt.wantIntra, tt.wantWorkers)
		}
	}
}
