// Package stack builds the Lookalike binaries once and runs them as real
// processes on loopback for end-to-end, fault and benchmark tests.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lookalike-dev/lookalike/shared/sysmon"
)

// Binaries built by Build, by name.
var binaries = []string{"preprocess", "embed", "search", "gateway", "indexer"}

// RepoRoot walks up from the working directory to the folder with go.work.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory")
		}
		dir = parent
	}
}

// Env is what the services need from outside: the shared data and ORT.
type Env struct {
	Repo      string
	Shared    string // ../shared: models and catalog
	ModelDir  string
	ORTLib    string
	BinDir    string
	CatalogJL string
}

// LoadEnv resolves paths from LOOKALIKE_SHARED, MODEL_DIR and
// ONNXRUNTIME_LIB, with the repository's defaults, and checks they exist.
func LoadEnv() (Env, error) {
	repo, err := RepoRoot()
	if err != nil {
		return Env{}, err
	}
	e := Env{Repo: repo}
	e.Shared = getenv("LOOKALIKE_SHARED", filepath.Join(repo, "..", "shared"))
	e.ModelDir = getenv("MODEL_DIR", filepath.Join(e.Shared, "models"))
	e.ORTLib = getenv("ONNXRUNTIME_LIB", filepath.Join(repo, ".cache", "onnxruntime", "libonnxruntime.so.1"))
	e.CatalogJL = filepath.Join(e.Shared, "catalog", "catalog.jsonl")
	for what, p := range map[string]string{"model dir (MODEL_DIR)": e.ModelDir, "ONNX Runtime library (ONNXRUNTIME_LIB; run make setup)": e.ORTLib, "demo catalog (LOOKALIKE_SHARED)": e.CatalogJL} {
		if _, err := os.Stat(p); err != nil {
			return Env{}, fmt.Errorf("%s not found at %s", what, p)
		}
	}
	return e, nil
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

var buildOnce sync.Once
var buildErr error

// Build compiles every binary into dir (once per test process).
func Build(e *Env, dir string) error {
	buildOnce.Do(func() {
		args := []string{"build", "-o", dir + "/"}
		for _, b := range binaries {
			args = append(args, "./"+pkgDir(b))
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = e.Repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	e.BinDir = dir
	return buildErr
}

func pkgDir(bin string) string {
	if bin == "indexer" {
		return "indexer/cmd/indexer"
	}
	return bin + "/cmd/" + bin
}

// handedOut holds the addresses FreeAddr gave this test binary: the kernel
// may offer a port again once its probe listener closes, before the process
// it was meant for binds it, and two services then race for one port.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// FreeAddr returns a loopback address with a free port, never one it
// returned before.
func FreeAddr(t TB) string {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// Proc is one running service.
type Proc struct {
	Name string
	Addr string
	// MetricsAddr is its internal listener (/metrics, /version, pprof).
	MetricsAddr string
	Env         []string
	Args        []string
	Log         string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	env  *Env
}

// URL is the service's base URL.
func (p *Proc) URL() string { return "http://" + p.Addr }

// MetricsURL is the base URL of the service's internal listener.
func (p *Proc) MetricsURL() string { return "http://" + p.MetricsAddr }

// Start launches the process; its output goes to p.Log.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(p.env.BinDir, p.Name), p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	cmd.Dir = p.env.Repo // services resolve their default relative paths from the repo root
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); f.Close(); close(done) }(p.done)
	return nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Wait waits for the process to exit, up to d; false on time-out.
func (p *Proc) Wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// Stop sends SIGTERM and, after grace, SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	p.Signal(syscall.SIGTERM)
	if !p.Wait(grace) {
		p.Signal(syscall.SIGKILL)
		p.Wait(5 * time.Second)
	}
}

// Kill sends SIGKILL and waits.
func (p *Proc) Kill() {
	p.Signal(syscall.SIGKILL)
	p.Wait(5 * time.Second)
}

// WaitReady polls /readyz until 200 or the timeout.
func (p *Proc) WaitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s at %s not ready after %s; log tail:\n%s", p.Name, p.Addr, timeout, Tail(p.Log, 30))
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready; log tail:\n%s", p.Name, Tail(p.Log, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// TB is the part of testing.TB the stack uses, so benchmarks and commands
// can run a stack too.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Stack is the four services wired together.
type Stack struct {
	Env      Env
	Dir      string
	AdminKey string
	// Procs holds every instance by name: "gateway", "embed-0", "embed-1", ...
	Procs map[string]*Proc
	// Instances lists the instance names of each service, in order.
	Instances map[string][]string
	order     []string
}

// Services in start order.
var Services = []string{"preprocess", "embed", "search", "gateway"}

// Options adjust a stack.
type Options struct {
	// Extra environment per service name.
	Extra map[string][]string
	// Replicas per downstream service (default 1); the gateway gets all URLs.
	Replicas map[string]int
}

// New builds the binaries and prepares (but does not start) a stack with
// fresh ports and a fresh data dir under t.TempDir().
func New(t TB, o Options) *Stack {
	t.Helper()
	env, err := LoadEnv()
	if err != nil {
		t.Fatalf("end-to-end environment: %v", err)
	}
	binDir := filepath.Join(os.TempDir(), "lookalike-e2e-bin")
	if err := Build(&env, binDir); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Stack{Env: env, Dir: dir, AdminKey: "e2e-admin-key-0123456789", Procs: map[string]*Proc{}, Instances: map[string][]string{}}
	// Every service runs with the Go runtime setting its image sets
	// (shared/sysmon: system calls stop waking sysmon out of deep sleep).
	common := []string{"MODEL_DIR=" + env.ModelDir, "ONNXRUNTIME_LIB=" + env.ORTLib, "OTEL_TRACES_EXPORTER=none",
		"GODEBUG=" + sysmon.With(os.Getenv("GODEBUG"))}
	urls := map[string][]string{}
	for _, svc := range Services {
		n := max(o.Replicas[svc], 1)
		if svc == "gateway" {
			n = 1
		}
		for i := range n {
			name := svc
			if n > 1 {
				name = fmt.Sprintf("%s-%d", svc, i)
			}
			addr := FreeAddr(t)
			urls[svc] = append(urls[svc], "http://"+addr)
			var e []string
			switch svc {
			case "preprocess":
				// One malloc arena, as the image sets (turbojpeg.ArenaEnv).
				e = []string{"PREPROCESS_ADDR=" + addr, "MALLOC_ARENA_MAX=1"}
			case "embed":
				e = []string{"EMBED_ADDR=" + addr, "EMBED_PROVIDER=cpu"}
			case "search":
				// GOMAXPROCS=1 for search and the gateway: the budget their
				// manifests' 1-CPU limit gives them in Kubernetes (Go sizes
				// GOMAXPROCS from the container limit), as hack/run.sh does.
				e = []string{"SEARCH_ADDR=" + addr, "SEARCH_DATA_DIR=" + filepath.Join(dir, name), "GOMAXPROCS=1"}
			case "gateway":
				e = []string{"GATEWAY_ADDR=" + addr, "LOOKALIKE_ADMIN_KEY=" + s.AdminKey, "GOMAXPROCS=1",
					"PREPROCESS_URLS=" + strings.Join(urls["preprocess"], ","), "EMBED_URLS=" + strings.Join(urls["embed"], ","),
					"SEARCH_URLS=" + strings.Join(urls["search"], ","), "CATALOG_DIR=" + filepath.Dir(env.CatalogJL),
					// Test machines are small and busy (2 cores, parallel builds): generous
					// hop timeouts, and no per-IP rate limit for the single test client.
					"GATEWAY_PREPROCESS_TIMEOUT=20s", "GATEWAY_EMBED_TIMEOUT=20s", "GATEWAY_SEARCH_TIMEOUT=10s",
					"GATEWAY_REQUEST_TIMEOUT=60s", "GATEWAY_RATE=0"}
			}
			metricsAddr := FreeAddr(t)
			e = append(e, strings.ToUpper(svc)+"_METRICS_ADDR="+metricsAddr)
			e = append(append(append([]string{}, common...), e...), o.Extra[svc]...)
			s.Procs[name] = &Proc{Name: svc, Addr: addr, MetricsAddr: metricsAddr, Env: e, Log: filepath.Join(dir, name+".log"), env: &s.Env}
			s.Instances[svc] = append(s.Instances[svc], name)
			s.order = append(s.order, name)
		}
	}
	t.Cleanup(func() {
		for _, p := range s.Procs {
			p.Stop(10 * time.Second)
		}
		if t.Failed() {
			for _, n := range s.order {
				t.Logf("---- %s log tail ----\n%s", n, Tail(s.Procs[n].Log, 40))
			}
		}
	})
	return s
}

// Start starts every instance and waits until all are ready.
func (s *Stack) Start(t TB) {
	t.Helper()
	for _, n := range s.order {
		if err := s.Procs[n].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range s.order {
		if err := s.Procs[n].WaitReady(context.Background(), 120*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// Gateway is the gateway's base URL.
func (s *Stack) Gateway() string { return s.Procs["gateway"].URL() }

// Logs returns every instance's log, concatenated.
func (s *Stack) Logs() string {
	var b strings.Builder
	for _, n := range s.order {
		data, _ := os.ReadFile(s.Procs[n].Log)
		b.Write(data)
	}
	return b.String()
}
