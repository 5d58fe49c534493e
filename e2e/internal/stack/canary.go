package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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
	addr := FreeAddr(t)
	e := []string{"MODEL_DIR=" + s.Env.ModelDir, "ONNXRUNTIME_LIB=" + s.Env.ORTLib, "OTEL_TRACES_EXPORTER=none",
		"EMBED_ADDR=" + addr, "EMBED_PROVIDER=cpu"}
	p := &Proc{Name: "embed", Addr: addr, Env: append(e, env...), Log: filepath.Join(s.Dir, name+".log"), env: &s.Env}
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
// their images next to it (a job resolves image paths inside the catalog's
// folder), and returns the catalog path.
func WriteCatalog(catalogDir, dir string, products []Product) (string, error) {
	var b bytes.Buffer
	for _, p := range products {
		src, err := os.ReadFile(filepath.Join(catalogDir, p.Image))
		if err != nil {
			return "", err
		}
		dst := filepath.Join(dir, p.Image)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(dst, src, 0o644); err != nil {
			return "", err
		}
		line, _ := json.Marshal(p)
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, "catalog.jsonl")
	return path, os.WriteFile(path, b.Bytes(), 0o644)
}

// Answer is one search through the gateway, with the arm it took.
type Answer struct {
	Status int
	SearchResponse
	Arm   string // Lookalike-Arm header
	Model string // Lookalike-Model-Id header
	Body  []byte
}

// SearchAs uploads img to /v1/search as client (Lookalike-Client-Id), with
// an optional arm override (Lookalike-Model) and query string.
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
