package render

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Overlays are the deployable overlays under overlays/.
var Overlays = []string{"dev", "prod"}

// ComponentSets are the component combinations every overlay is checked with (order as an operator must
// list them: embed-canary before gpu, so the GPU patch reaches the canary too).
var ComponentSets = [][]string{
	nil,
	{"embed-canary"},
	{"gpu"},
	{"embed-canary", "gpu"},
	{"qdrant-snapshot-s3"},
}

// AllVariants is every overlay with every component set, plus the bulk-indexing Job template.
func AllVariants() []Variant {
	var vs []Variant
	for _, o := range Overlays {
		for _, cs := range ComponentSets {
			vs = append(vs, Variant{Overlay: o, Components: cs})
		}
	}
	return append(vs, Variant{Overlay: "jobs/indexer"})
}

// SecretTemplates decodes manifests/secrets/*.template.yaml: the Secrets an operator creates by hand.
func SecretTemplates(root string) ([]Object, error) {
	files, err := filepath.Glob(filepath.Join(root, "secrets", "*.template.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no secret templates under %s/secrets", root)
	}
	sort.Strings(files)
	var out []Object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := DecodeAll(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}
