// Package render builds the kustomize overlays in process (sigs.k8s.io/kustomize/api/krusty) and strictly
// decodes every rendered object into its client-go type, so an unknown field or a wrong type fails here,
// before any cluster sees it.
package render

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest: its YAML, its generic form and its typed client-go form.
type Object struct {
	YAML    []byte
	Generic *unstructured.Unstructured
	Typed   runtime.Object
}

// Key names the object for messages: Kind/namespace/name.
func (o Object) Key() string {
	ns := o.Generic.GetNamespace()
	if ns == "" {
		return o.Generic.GetKind() + "/" + o.Generic.GetName()
	}
	return o.Generic.GetKind() + "/" + ns + "/" + o.Generic.GetName()
}

// GVK is the object's group, version and kind.
func (o Object) GVK() schema.GroupVersionKind { return o.Generic.GroupVersionKind() }

// Variant is one thing to render: an overlay plus extra components, and optional image overrides
// (name -> new tag), as an operator would write them into the overlay's kustomization.
type Variant struct {
	Overlay    string   // e.g. "dev" (a folder under overlays/) or a path relative to the tree root, e.g. "jobs/indexer"
	Components []string // e.g. "embed-canary", "gpu" (folders under components/), applied in this order
	ImageTags  map[string]string
}

// Name is a short label for test names: dev+embed-canary+gpu.
func (v Variant) Name() string {
	n := strings.ReplaceAll(v.Overlay, "/", "-")
	for _, c := range v.Components {
		n += "+" + c
	}
	keys := make([]string, 0, len(v.ImageTags))
	for k := range v.ImageTags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n += "+" + path.Base(k) + "=" + v.ImageTags[k]
	}
	return n
}

// Tree is the manifests folder loaded into memory, so variants can be written beside the real overlays
// without touching the disk.
type Tree struct {
	fs filesys.FileSystem
}

const memRoot = "/manifests"

// LoadTree copies every kustomize input (yaml, sh, txt, properties, env) under root into memory.
func LoadTree(root string) (*Tree, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".sh", ".txt", ".env", ".properties", ".json":
		default:
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join(memRoot, filepath.ToSlash(rel)), data)
	})
	if err != nil {
		return nil, fmt.Errorf("loading manifests from %s: %w", root, err)
	}
	return &Tree{fs: mem}, nil
}

// WriteFile replaces or adds a file in the in-memory tree (path relative to the manifests root); tests
// use it to break a manifest on purpose.
func (t *Tree) WriteFile(rel string, data []byte) error {
	return t.fs.WriteFile(path.Join(memRoot, rel), data)
}

// ReadFile reads a file of the in-memory tree (path relative to the manifests root).
func (t *Tree) ReadFile(rel string) ([]byte, error) {
	return t.fs.ReadFile(path.Join(memRoot, rel))
}

// Render builds one variant and strictly decodes the result.
func (t *Tree) Render(v Variant) ([]Object, error) {
	dir, err := t.variantDir(v)
	if err != nil {
		return nil, err
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(t.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", v.Name(), err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("serialising %s: %w", v.Name(), err)
	}
	return DecodeAll(out)
}

// variantDir returns the kustomization folder for v: the overlay itself, or a sibling folder holding the
// overlay's kustomization plus the extra components and image tags (same depth, so relative paths hold).
func (t *Tree) variantDir(v Variant) (string, error) {
	base := path.Join(memRoot, "overlays", v.Overlay)
	if strings.Contains(v.Overlay, "/") {
		base = path.Join(memRoot, v.Overlay)
	}
	if len(v.Components) == 0 && len(v.ImageTags) == 0 {
		return base, nil
	}
	raw, err := t.fs.ReadFile(path.Join(base, "kustomization.yaml"))
	if err != nil {
		return "", fmt.Errorf("reading overlay %s: %w", v.Overlay, err)
	}
	var kust map[string]any
	if err := yaml.Unmarshal(raw, &kust); err != nil {
		return "", fmt.Errorf("parsing overlay %s: %w", v.Overlay, err)
	}
	comps, _ := kust["components"].([]any)
	rel := strings.Repeat("../", strings.Count(strings.TrimPrefix(base, memRoot+"/"), "/")+1)
	for _, c := range v.Components {
		comps = append(comps, rel+"components/"+c)
	}
	if len(comps) > 0 {
		kust["components"] = comps
	}
	if len(v.ImageTags) > 0 {
		images, _ := kust["images"].([]any)
		for name, tag := range v.ImageTags {
			found := false
			for _, im := range images {
				m, ok := im.(map[string]any)
				if ok && m["name"] == name {
					m["newTag"] = tag
					found = true
				}
			}
			if !found {
				images = append(images, map[string]any{"name": name, "newTag": tag})
			}
		}
		kust["images"] = images
	}
	data, err := yaml.Marshal(kust)
	if err != nil {
		return "", err
	}
	dir := path.Join(path.Dir(base), "zz-variant-"+strings.NewReplacer("+", "-", "=", "-", "/", "-").Replace(v.Name()))
	if err := t.fs.MkdirAll(dir); err != nil {
		return "", err
	}
	if err := t.fs.WriteFile(path.Join(dir, "kustomization.yaml"), data); err != nil {
		return "", err
	}
	return dir, nil
}

// strictDecoder refuses unknown and duplicate fields.
var strictCodecs = serializer.NewCodecFactory(clientgoscheme.Scheme, serializer.EnableStrict)

// DecodeAll splits a multi-document YAML stream and strictly decodes each document into its client-go type.
func DecodeAll(stream []byte) ([]Object, error) {
	var objs []Object
	for i, doc := range splitYAML(stream) {
		o, err := Decode(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// Decode strictly decodes one YAML document.
func Decode(doc []byte) (Object, error) {
	var generic unstructured.Unstructured
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return Object{}, fmt.Errorf("yaml: %w", err)
	}
	if err := generic.UnmarshalJSON(js); err != nil {
		return Object{}, fmt.Errorf("reading object: %w", err)
	}
	typed, _, err := strictCodecs.UniversalDeserializer().Decode(doc, nil, nil)
	if err != nil {
		return Object{}, fmt.Errorf("strict decode of %s %s: %w", generic.GetKind(), generic.GetName(), err)
	}
	return Object{YAML: doc, Generic: &generic, Typed: typed}, nil
}

func splitYAML(stream []byte) [][]byte {
	var docs [][]byte
	for _, part := range bytes.Split(stream, []byte("\n---\n")) {
		part = bytes.TrimPrefix(part, []byte("---\n"))
		if len(bytes.TrimSpace(part)) == 0 {
			continue
		}
		docs = append(docs, part)
	}
	return docs
}
