package buildinfo

import "testing"

func TestRead(t *testing.T) {
	tests := []struct{ commit, want string }{{"abc123", "abc123"}, {"", "unknown"}}
	for _, tc := range tests {
		inf := Read("svc", tc.commit)
		// Test binaries carry no VCS stamp under -buildvcs=false.
		if tc.commit != "" && inf.Commit != tc.want {
			t.Errorf("commit = %q, want %q", inf.Commit, tc.want)
		}
		if inf.Commit == "" || inf.Version == "" || inf.GoVersion == "" || inf.Service != "svc" {
			t.Errorf("incomplete info %+v", inf)
		}
	}
}
