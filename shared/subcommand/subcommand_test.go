package subcommand

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		ran      string
		seen     []string // os.Args[1:] the command sees
		contains string   // on stderr
	}{
		{"default without arguments", nil, 0, "run", []string{}, ""},
		{"default before flags", []string{"--x=1"}, 0, "run", []string{"--x=1"}, ""},
		{"named", []string{"serve", "--addr=:1"}, 0, "serve", []string{"--addr=:1"}, ""},
		{"help", []string{"help"}, 0, "", nil, "serve"},
		{"unknown", []string{"bogus"}, ExitUsage, "", nil, `unknown command "bogus"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := os.Args
			t.Cleanup(func() { os.Args = old })
			os.Args = append([]string{"/bin/tool"}, tc.args...)
			ran, seen := "", []string(nil)
			cmd := func(name string) Command {
				return Command{Name: name, Summary: name + "s", Run: func(_ context.Context, args []string) int {
					ran, seen = name, append([]string{}, os.Args[1:]...)
					if !slices.Equal(args, seen) {
						t.Errorf("args %q, os.Args %q", args, seen)
					}
					return 0
				}}
			}
			var errb bytes.Buffer
			code := Run(context.Background(), &errb, "run", cmd("run"), cmd("serve"))
			if code != tc.code || ran != tc.ran || (tc.seen != nil && !slices.Equal(seen, tc.seen)) || !strings.Contains(errb.String(), tc.contains) {
				t.Fatalf("code %d ran %q seen %q stderr %q", code, ran, seen, errb.String())
			}
		})
	}
}
