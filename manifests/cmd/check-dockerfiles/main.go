// Command check-dockerfiles checks the services' Dockerfiles statically (no container engine needed):
//
//	GOWORK=off go run ./cmd/check-dockerfiles -root ..
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lookalike-dev/lookalike/manifests/internal/dockerfilecheck"
)

func main() {
	root := flag.String("root", "..", "the build context (the repo root)")
	flag.Parse()
	problems := dockerfilecheck.CheckAll(*root)
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "check-dockerfiles: %d problem(s)\n", len(problems))
		os.Exit(1)
	}
	fmt.Printf("check-dockerfiles: %d Dockerfiles ok\n", len(dockerfilecheck.Expected))
}
