// Command render prints one variant of the manifests as YAML, exactly as the checks see it:
//
//	GOWORK=off go run ./cmd/render [-root .] dev [embed-canary gpu ...]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lookalike-dev/lookalike/manifests/internal/render"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run() error {
	root := flag.String("root", ".", "the manifests folder")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: render [-root DIR] OVERLAY [COMPONENT...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() < 1 {
		flag.Usage()
		return fmt.Errorf("no overlay given")
	}
	tree, err := render.LoadTree(*root)
	if err != nil {
		return err
	}
	objs, err := tree.Render(render.Variant{Overlay: flag.Arg(0), Components: flag.Args()[1:]})
	if err != nil {
		return err
	}
	for _, o := range objs {
		fmt.Printf("---\n%s", o.YAML)
	}
	return nil
}
