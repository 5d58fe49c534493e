package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"image"
	"image/color"
	"image/jpeg"
	_ "image/png" // catalog photos
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// AddEmbed adds one more embed instance, name (e.g. "embed-canary"), with
// extra environment (e.g. the one model it serves). It is started with the
// stack, before the gateway, and is not in the gateway's EMBED_URLS: point
// the gateway at it with Procs["gateway"].Env (e.g. CANARY_EMBED_URLS).
// Call it before Start.
func (s *Stack) AddEmbed(t TB, name string, env ...string) *Proc {
	t.Helper()
	if _, dup := s.Procs[name]; dup {
		t.Fatalf("stack already has %s", name)
	}
	addr, metricsAddr := FreeAddr(t), FreeAddr(t)
	e := []string{"MODEL_DIR=" + s.Env.ModelDir, "ONNXRUNTIME_LIB=" + s.Env.ORTLib, "OTEL_TRACES_EXPORTER=none",
		"EMBED_ADDR=" + addr, "EMBED_METRICS_ADDR=" + metricsAddr, "EMBED_PROVIDER=cpu",
		"EMBED_MODELS_DIR=" + filepath.Join(s.Env.Repo, "embed", "models")}
	p := &Proc{Name: "embed", Addr: addr, MetricsAddr: metricsAddr, Env: append(e, env...), Log: filepath.Join(s.Dir, name+".log"), env: &s.Env}
	s.Procs[name] = p
	s.Instances["embed"] = append(s.Instances["embed"], name)
	at := slices.Index(s.order, "gateway")
	if at < 0 {
		at = len(s.order)
	}
	s.order = slices.Insert(s.order, at, name)
	return p
}

// URLOf is the base URL of the first instance of a service.
func (s *Stack) URLOf(svc string) string {
	if names := s.Instances[svc]; len(names) > 0 {
		return s.Procs[names[0]].URL()
	}
	return ""
}

// CommandResult is a finished command.
type CommandResult struct {
	Exit           int
	Stdout, Stderr string
}

// LastLine is the last non-empty stdout line (the indexer's JSON summary).
func (r CommandResult) LastLine() string {
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	return lines[len(lines)-1]
}

// Command runs one of the stack's binaries (e.g. "indexer run ...",
// "gateway canary report") with the stack's common environment plus env,
// and waits for it, up to timeout.
func (s *Stack) Command(ctx context.Context, timeout time.Duration, bin string, env []string, args ...string) (CommandResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.Env.BinDir, bin), args...)
	cmd.Env = append(append(os.Environ(), "MODEL_DIR="+s.Env.ModelDir, "ONNXRUNTIME_LIB="+s.Env.ORTLib, "OTEL_TRACES_EXPORTER=none"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := CommandResult{Stdout: out.String(), Stderr: errb.String()}
	if cmd.ProcessState != nil {
		res.Exit = cmd.ProcessState.ExitCode()
	}
	if _, isExit := err.(*exec.ExitError); isExit {
		err = nil // the exit status says it
	}
	return res, err
}

// WriteCatalog writes products as a JSONL catalog in dir, with copies of
// their images (read from catalogDir) next to it, since a job resolves
// image paths inside the catalog's folder; it returns the catalog path.
func WriteCatalog(catalogDir, dir string, products []Product) (string, error) {
	var b bytes.Buffer
	for _, p := range products {
		src, err := os.ReadFile(filepath.Join(catalogDir, p.Image))
		if err != nil {
			return "", err
		}
		if err := writeFile(filepath.Join(dir, p.Image), src); err != nil {
			return "", err
		}
		line, _ := json.Marshal(p)
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, "catalog.jsonl")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// Thumbnails writes a copy of every product image into dir, scaled down
// (area average) so its longer side is at most maxSide and encoded as JPEG
// under the same name, and returns dir. Tests that send hundreds of
// queries on two cores use them: a 6 MB photo costs preprocess far more
// than the embedder, and the vector spaces do not care.
func Thumbnails(catalogDir, dir string, products []Product, maxSide int) (string, error) {
	for _, p := range products {
		src, err := os.ReadFile(filepath.Join(catalogDir, p.Image))
		if err != nil {
			return "", err
		}
		img, _, err := image.Decode(bytes.NewReader(src))
		if err != nil {
			return "", fmt.Errorf("%s: %w", p.Image, err)
		}
		var out bytes.Buffer
		if err := jpeg.Encode(&out, shrink(img, maxSide), &jpeg.Options{Quality: 92}); err != nil {
			return "", err
		}
		if err := writeFile(filepath.Join(dir, p.Image), out.Bytes()); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// shrink scales img down by an integer factor so its longer side is at
// most maxSide, averaging each factor x factor block.
func shrink(img image.Image, maxSide int) image.Image {
	b := img.Bounds()
	f := (max(b.Dx(), b.Dy()) + maxSide - 1) / maxSide
	if f <= 1 {
		f = 1
	}
	w, h := b.Dx()/f, b.Dy()/f
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			var r, g, bl uint32
			for dy := range f {
				for dx := range f {
					cr, cg, cb, _ := img.At(b.Min.X+x*f+dx, b.Min.Y+y*f+dy).RGBA()
					r, g, bl = r+cr, g+cg, bl+cb
				}
			}
			n := uint32(f * f)
			out.SetRGBA(x, y, color.RGBA{uint8(r / n >> 8), uint8(g / n >> 8), uint8(bl / n >> 8), 255})
		}
	}
	return out
}

// Answer is one search through the gateway, with the arm it took.
type Answer struct {
	Status int
	gatewayv1.SearchResponse
	Arm   string // Lookalike-Arm header
	Model string // Lookalike-Model-Id header
	Body  []byte
}

// SearchAs uploads img to /v1/search as client (Lookalike-Client-Id), with
// an optional arm override (Lookalike-Model, sent with the admin key: the
// gateway takes it from admins only) and query string.
func (c *Client) SearchAs(img []byte, client, override, query string) (Answer, error) {
	body, ct := Multipart(nil, map[string][]byte{"image": img})
	req, err := http.NewRequest(http.MethodPost, c.Base+"/v1/search"+query, body)
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", ct)
	if client != "" {
		req.Header.Set("Lookalike-Client-Id", client)
	}
	if override != "" {
		req.Header.Set("Lookalike-Model", override)
		req.Header.Set("Authorization", "Bearer "+c.AdminKey)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return Answer{}, err
	}
	a := Answer{Status: resp.StatusCode, Arm: resp.Header.Get("Lookalike-Arm"), Model: resp.Header.Get("Lookalike-Model-Id"), Body: buf.Bytes()}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(a.Body, &a.SearchResponse); err != nil {
			return a, fmt.Errorf("search response: %w: %s", err, a.Body)
		}
	}
	return a, nil
}

// AdminJSON sends an admin request with a JSON body (nil: none) and decodes
// a JSON answer into out (nil: ignored); it returns the status and body.
func (c *Client) AdminJSON(method, path string, in, out any) (int, []byte, error) {
	var rd *bytes.Reader
	ct := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		rd, ct = bytes.NewReader(b), "application/json"
	} else {
		rd = bytes.NewReader(nil)
	}
	st, b, _, err := c.Do(method, path, ct, rd, true)
	if err == nil && out != nil && st/100 == 2 {
		err = json.Unmarshal(b, out)
	}
	return st, b, err
}
