package canary

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/gateway/internal/guard"
)

func TestBucketIsStickyAndSalted(t *testing.T) {
	tests := []struct {
		name          string
		salt1, key1   string
		salt2, key2   string
		wantSameValue bool
	}{
		{"same client same canary", "model-b", "id:alice", "model-b", "id:alice", true},
		{"other client", "model-b", "id:alice", "model-b", "id:bob", false},
		{"other canary reshuffles", "model-b", "id:alice", "model-c", "id:alice", false},
		{"salt and key do not run together", "ab", "c", "a", "bc", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := Bucket(tc.salt1, tc.key1), Bucket(tc.salt2, tc.key2)
			if a < 0 || a >= 1 || b < 0 || b >= 1 {
				t.Fatalf("buckets %v %v outside [0,1)", a, b)
			}
			if (a == b) != tc.wantSameValue {
				t.Fatalf("Bucket = %v and %v, want same = %v", a, b, tc.wantSameValue)
			}
			for range 100 { // stable across calls
				if Bucket(tc.salt1, tc.key1) != a {
					t.Fatal("bucket changed between calls")
				}
			}
		})
	}
}

func TestInCanaryDistribution(t *testing.T) {
	tests := []struct {
		name     string
		clients  int
		key      string // fmt pattern
		share    float64
		min, max float64
	}{
		{"10% of 20000 sequential ids", 20000, "id:client-%d", 0.10, 0.093, 0.107},
		{"5% of 20000 ips", 20000, "ip:10.0.%d", 0.05, 0.045, 0.055},
		{"10% of 200 ids (the e2e test's tolerance)", 200, "id:e2e-client-%03d", 0.10, 0.04, 0.18},
		{"50%", 20000, "id:u%d", 0.5, 0.48, 0.52},
		{"0% sends nobody", 5000, "id:u%d", 0, 0, 0},
		{"100% sends everybody", 5000, "id:u%d", 1, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := 0
			for i := range tc.clients {
				if InCanary("mobilenetv2-int8-logits-v1", fmt.Sprintf(tc.key, i), tc.share) {
					in++
				}
			}
			got := float64(in) / float64(tc.clients)
			if got < tc.min || got > tc.max {
				t.Fatalf("canary share %.4f, want %.3f..%.3f", got, tc.min, tc.max)
			}
		})
	}
}

func TestRaisingTheShareKeepsCanaryClients(t *testing.T) {
	for i := range 5000 {
		key := fmt.Sprintf("id:%d", i)
		if InCanary("b", key, 0.05) && !InCanary("b", key, 0.10) {
			t.Fatalf("%s in the canary at 5%% but not at 10%%", key)
		}
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		remote string
		trust  []string
		want   string
	}{
		{"client id header", map[string]string{HeaderClientID: "session-42"}, "10.1.2.3:5555", nil, "id:session-42"},
		{"client id trimmed", map[string]string{HeaderClientID: "  s1  "}, "10.1.2.3:5555", nil, "id:s1"},
		{"no header: connection ip", nil, "10.1.2.3:5555", nil, "ip:10.1.2.3"},
		{"too long id: ip", map[string]string{HeaderClientID: strings.Repeat("x", MaxClientID+1)}, "10.1.2.3:5555", nil, "ip:10.1.2.3"},
		{"control characters: ip", map[string]string{HeaderClientID: "a\x01b"}, "10.1.2.3:5555", nil, "ip:10.1.2.3"},
		{"forwarded ignored unless trusted", map[string]string{"X-Forwarded-For": "203.0.113.9"}, "10.1.2.3:5555", nil, "ip:10.1.2.3"},
		{"forwarded trusted", map[string]string{"X-Forwarded-For": "203.0.113.9"}, "10.1.2.3:5555", []string{"10.0.0.0/8"}, "ip:203.0.113.9"},
		{"forwarded from an untrusted peer", map[string]string{"X-Forwarded-For": "203.0.113.9"}, "192.0.2.1:5555", []string{"10.0.0.0/8"}, "ip:192.0.2.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/search", nil)
			r.RemoteAddr = tc.remote
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			ext, err := guard.ClientIP(tc.trust)
			if err != nil {
				t.Fatal(err)
			}
			if got := ClientKey(r, ext); got != tc.want {
				t.Fatalf("ClientKey = %q, want %q", got, tc.want)
			}
		})
	}
}
