package loadgen

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		conc, max int
		failEvery int
		wantReq   int
		wantErrs  int
	}{
		{"bounded by count", 4, 40, 0, 40, 0},
		{"errors counted", 2, 10, 5, 10, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(context.Background(), tc.conc, 10*time.Second, tc.max, func(ctx context.Context, i int) error {
				time.Sleep(time.Millisecond)
				if tc.failEvery > 0 && i%tc.failEvery == 0 {
					return errors.New("boom")
				}
				return nil
			})
			if r.Requests != tc.wantReq || r.Errors != tc.wantErrs {
				t.Fatalf("got %+v", r)
			}
			if r.P50ms < 1 || r.P99ms < r.P50ms || r.Throughput <= 0 {
				t.Fatalf("bad stats %+v", r)
			}
		})
	}
}
