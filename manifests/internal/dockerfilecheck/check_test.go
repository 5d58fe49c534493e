package dockerfilecheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lookalike-dev/lookalike/manifests/internal/dockerfilecheck"
)

// TestRepositoryDockerfiles checks the real Dockerfiles, with the repo root as the build context.
func TestRepositoryDockerfiles(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if problems := dockerfilecheck.CheckAll(root); len(problems) > 0 {
		t.Fatalf("Dockerfile problems:\n%s", strings.Join(problems, "\n"))
	}
}

const good = `# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
ENV CGO_ENABLED=0
COPY svc/ svc/
RUN cd svc && go build -o /out/svc ./cmd/svc
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/svc /svc
USER 65532:65532
ENV GODEBUG=schedtrace=2147483647
ENTRYPOINT ["/svc"]
`

func TestCheckCatchesBrokenDockerfiles(t *testing.T) {
	tests := []struct {
		name       string
		dockerfile string
		ignore     string
		want       string // substring of a problem; "" = no problem
	}{
		{"good", good, "", ""},
		{"single stage", "FROM golang:1.26\nCOPY svc/ svc/\nUSER 1000\nENTRYPOINT [\"x\"]\n", "", "not multi-stage"},
		{"no user", strings.Replace(good, "USER 65532:65532\n", "", 1), "", "sets no USER"},
		{"root user", strings.Replace(good, "USER 65532:65532", "USER root", 1), "", "numeric non-root"},
		{"uid 0", strings.Replace(good, "USER 65532:65532", "USER 0:0", 1), "", "numeric non-root"},
		{"named user", strings.Replace(good, "USER 65532:65532", "USER nonroot", 1), "", "numeric non-root"},
		{"missing source", strings.Replace(good, "COPY svc/ svc/", "COPY svc/go.sum svc/", 1), "", "does not exist"},
		{"source outside context", strings.Replace(good, "COPY svc/ svc/", "COPY ../shared/models /models", 1), "", "outside the build context"},
		{"ignored source", good, "svc\n", "excluded by .dockerignore"},
		{"unknown stage", strings.Replace(good, "--from=build", "--from=builder", 1), "", "no earlier stage"},
		{"latest base", strings.Replace(good, "static-debian12:nonroot", "static-debian12:latest", 1), "", "uses latest"},
		{"untagged base", strings.Replace(good, "gcr.io/distroless/static-debian12:nonroot", "debian", 1), "", "no tag"},
		{"undefined arg", strings.Replace(good, "ARG GO_VERSION=1.26\n", "", 1), "", "empty part"},
		{"no entrypoint", strings.Replace(good, "ENTRYPOINT [\"/svc\"]\n", "", 1), "", "no ENTRYPOINT"},
		{"cgo on for a static build", strings.Replace(good, "CGO_ENABLED=0", "CGO_ENABLED=1", 1), "", "CGO_ENABLED"},
		{"no runtime GODEBUG", strings.Replace(good, "ENV GODEBUG=schedtrace=2147483647\n", "", 1), "", "sets no GODEBUG"},
		{"runtime GODEBUG in the build stage only", strings.Replace(strings.Replace(good, "ENV GODEBUG=schedtrace=2147483647\n", "", 1), "ENV CGO_ENABLED=0", "ENV CGO_ENABLED=0 GODEBUG=schedtrace=2147483647", 1), "", "sets no GODEBUG"},
		{"runtime GODEBUG with other entries", strings.Replace(good, "GODEBUG=schedtrace=2147483647", "GODEBUG=madvdontneed=1,schedtrace=2147483647", 1), "", ""},
		{"missing build package", strings.Replace(good, "./cmd/svc", "./cmd/svc", 1), "", "__pkg__"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			must(t, os.MkdirAll(filepath.Join(root, "svc", "cmd", "svc"), 0o755))
			must(t, os.WriteFile(filepath.Join(root, "svc", "go.mod"), []byte("module x\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(root, "svc", "Dockerfile"), []byte(tt.dockerfile), 0o644))
			if tt.ignore != "" {
				must(t, os.WriteFile(filepath.Join(root, ".dockerignore"), []byte(tt.ignore), 0o644))
			}
			pkg := "svc/cmd/svc"
			want := tt.want
			if want == "__pkg__" {
				pkg, want = "svc/cmd/missing", "does not exist"
			}
			problems := dockerfilecheck.Check(root, dockerfilecheck.Spec{Path: "svc/Dockerfile", CGO: "0", BuildPackage: pkg})
			joined := strings.Join(problems, "\n")
			switch {
			case want == "" && len(problems) > 0:
				t.Fatalf("want no problem, got:\n%s", joined)
			case want != "" && !strings.Contains(joined, want):
				t.Fatalf("want a problem containing %q, got:\n%s", want, joined)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
