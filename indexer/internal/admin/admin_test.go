package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/indexer/internal/testcat"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1"
	"github.com/lookalike-dev/lookalike/shared/contract/embedv1/embedv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1"
	"github.com/lookalike-dev/lookalike/shared/contract/preprocessv1/preprocessv1test"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1/searchv1test"
)

const key = "s3cret-admin-key"

type fixture struct {
	srv  *httptest.Server
	m    *Manager
	sea  *searchv1test.Server
	emb  *embedv1test.Server
	root string
	cat  string // catalog root
	want testcat.Want
	// download serves catalog URLs (nil: none).
	download Downloader
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, key, nil) }

// newFixtureWith serves with the admin keys keys (comma-separated) and
// catalog URLs from download (nil: none).
func newFixtureWith(t *testing.T, keys string, download Downloader) *fixture {
	t.Helper()
	pre, emb, sea := preprocessv1test.New().Serve(), embedv1test.New(testcat.Models(16, "fake-a-v1", "fake-b-v1")...).Serve(), searchv1test.New().Serve()
	t.Cleanup(func() { pre.Close(); emb.Close(); sea.Close() })
	f := &fixture{sea: sea, emb: emb, root: t.TempDir(), cat: t.TempDir(), download: download}
	var err error
	_, f.want, err = testcat.Write(f.cat, testcat.Options{Good: 20, Bad: true})
	if err != nil {
		t.Fatal(err)
	}
	factory := func(s Spec, dir string, src Source, resume bool) (job.Config, error) {
		model := s.Model
		if model == "" {
			model = "fake-a-v1"
		}
		tg := func(m string) job.Target {
			return job.Target{Model: m, Catalog: "products", MakeAlias: true, Preprocess: &preprocessv1.Client{BaseURL: pre.URL()},
				Embed: &embedv1.Client{BaseURL: emb.URL()}, Search: &searchv1.Client{BaseURL: sea.URL()}}
		}
		ts := []job.Target{tg(model)}
		for _, m := range s.ExtraModels {
			ts = append(ts, tg(m))
		}
		ratio := 0.5
		if s.MaxErrorRatio > 0 {
			ratio = s.MaxErrorRatio
		}
		return job.Config{Catalog: src.Name, CatalogRoot: src.Root, Format: s.Format, StateDir: dir, Resume: resume, Targets: ts, NoLocalImages: src.Uploaded,
			MaxErrorRatio: ratio, CheckpointEvery: 20 * time.Millisecond, Linger: 5 * time.Millisecond, EmbedBatch: 4}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.m.Wait() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.m, err = NewManager(ctx, f.root, f.cat, factory, f.download, log)
	if err != nil {
		t.Fatal(err)
	}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if ae, ok := apierror.As(err); ok {
			apierror.Write(c.Response(), ae)
			return
		}
		if he, ok := err.(*echo.HTTPError); ok {
			apierror.Write(c.Response(), apierror.New(he.Code, "http", "%v", he.Message))
			return
		}
		apierror.Write(c.Response(), apierror.New(500, apierror.CodeInternal, "%v", err))
	}
	ak, err := adminkey.New(adminkey.Config{Keys: keys}, log)
	if err != nil {
		t.Fatal(err)
	}
	(&API{M: f.m, Keys: ak, MaxUpload: 1 << 20}).Register(e)
	f.srv = httptest.NewServer(e)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) do(t *testing.T, method, path, ct string, body []byte, auth string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) waitDone(t *testing.T, id string) Info {
	t.Helper()
	for range 1000 {
		code, b := f.do(t, "GET", RouteJobs+"/"+id, "", nil, "Bearer "+key)
		var in Info
		if code != 200 || json.Unmarshal(b, &in) != nil {
			t.Fatalf("GET job: %d %s", code, b)
		}
		switch in.State {
		case job.StateCompleted, job.StateFailed, job.StateCanceled:
			return in
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("job did not finish")
	return Info{}
}

func errCode(b []byte) string {
	var env apierror.Envelope
	_ = json.Unmarshal(b, &env)
	if env.Error == nil {
		return ""
	}
	return env.Error.Code
}

func TestAuth(t *testing.T) {
	f := newFixture(t)
	for _, auth := range []string{"bearer " + key, "BEARER " + key, "Bearer " + key} {
		if code, b := f.do(t, "GET", RouteJobs, "", nil, auth); code != 200 {
			t.Errorf("GET with %q: %d %s", auth, code, b)
		}
	}
	for _, auth := range []string{"", "Bearer", "Bearer wrong", "Basic " + key, "Bearer " + key + "x"} {
		for _, r := range []struct{ m, p string }{{"GET", RouteJobs}, {"POST", RouteJobs}, {"GET", RouteJobs + "/x"}, {"DELETE", RouteJobs + "/x"}, {"GET", RouteJobs + "/x/report"}} {
			code, b := f.do(t, r.m, r.p, "application/json", []byte(`{}`), auth)
			if code != 401 || errCode(b) != apierror.CodeUnauthorized {
				t.Errorf("%s %s with %q: %d %s", r.m, r.p, auth, code, b)
			}
		}
	}
}

func TestStartFromPathAndWatch(t *testing.T) {
	f := newFixture(t)
	code, b := f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_path":"catalog.jsonl","extra_models":["fake-b-v1"]}`), "Bearer "+key)
	if code != 202 {
		t.Fatalf("POST: %d %s", code, b)
	}
	var in Info
	json.Unmarshal(b, &in)
	got := f.waitDone(t, in.ID)
	if got.State != job.StateCompleted || got.Counts.Done != len(f.want.Indexed) || got.Counts.Failed != len(f.want.Failed) || got.Counts.Items != f.want.Items {
		t.Fatalf("job %+v, want done %d failed %d", got, len(f.want.Indexed), len(f.want.Failed))
	}
	if got.RatePerSecond <= 0 || got.StartedAt == nil || got.FinishedAt == nil {
		t.Errorf("no rate or times: %+v", got)
	}
	if f.sea.Count("products__fake-a-v1") != len(f.want.Indexed) || f.sea.Count("products__fake-b-v1") != len(f.want.Indexed) {
		t.Errorf("points A %d B %d", f.sea.Count("products__fake-a-v1"), f.sea.Count("products__fake-b-v1"))
	}
	// The failed report lists exactly the failures.
	code, b = f.do(t, "GET", RouteJobs+"/"+in.ID+"/report?status=failed", "", nil, "Bearer "+key)
	if code != 200 {
		t.Fatalf("report: %d %s", code, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(f.want.Failed) {
		t.Fatalf("failed report has %d lines, want %d: %s", len(lines), len(f.want.Failed), b)
	}
	for _, l := range lines {
		var e job.Entry
		if json.Unmarshal([]byte(l), &e) != nil || f.want.Failed[e.Line] != e.Code {
			t.Errorf("report line %s not a wanted failure", l)
		}
	}
	// Listing shows it.
	code, b = f.do(t, "GET", RouteJobs, "", nil, "Bearer "+key)
	if code != 200 || !strings.Contains(string(b), in.ID) {
		t.Fatalf("list: %d %s", code, b)
	}
}

func TestUploads(t *testing.T) {
	f := newFixture(t)
	// Uploaded catalogs hold URLs only (no folder for relative paths), so
	// every line fails with a reason; the job still completes its report.
	body := []byte("{\"sku\":\"A\",\"image\":\"img/p00000.png\"}\n{\"sku\":\"B\"}\n")
	code, b := f.do(t, "POST", RouteJobs+"?model=fake-a-v1", "application/x-ndjson", body, "Bearer "+key)
	if code != 202 {
		t.Fatalf("ndjson upload: %d %s", code, b)
	}
	var in Info
	json.Unmarshal(b, &in)
	got := f.waitDone(t, in.ID)
	if got.Counts.Items != 2 || got.Counts.Failed != 2 || got.State != job.StateFailed {
		t.Fatalf("ndjson job %+v", got)
	}
	// Multipart: spec then catalog (CSV).
	var mb bytes.Buffer
	mw := multipart.NewWriter(&mb)
	sw, _ := mw.CreateFormField("spec")
	sw.Write([]byte(`{"model":"fake-b-v1","max_error_ratio":1}`))
	fw, _ := mw.CreateFormFile("catalog", "c.csv")
	fw.Write([]byte("sku,image,title\nX,nowhere.png,t\n"))
	mw.Close()
	code, b = f.do(t, "POST", RouteJobs, mw.FormDataContentType(), mb.Bytes(), "Bearer "+key)
	if code != 202 {
		t.Fatalf("multipart upload: %d %s", code, b)
	}
	json.Unmarshal(b, &in)
	got = f.waitDone(t, in.ID)
	if got.State != job.StateCompleted || got.Counts.Items != 1 || got.Counts.Failed != 1 || got.Models[0] != "fake-b-v1" || in.Spec.Format != "csv" {
		t.Fatalf("multipart job %+v spec %+v", got, in.Spec)
	}
	// Too large.
	code, b = f.do(t, "POST", RouteJobs, "application/x-ndjson", bytes.Repeat([]byte("x"), 2<<20), "Bearer "+key)
	if code != 413 || errCode(b) != apierror.CodePayloadTooLarge {
		t.Fatalf("big upload: %d %s", code, b)
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t)
	outside := filepath.Join(t.TempDir(), "c.jsonl")
	os.WriteFile(outside, []byte("{}\n"), 0o644)
	tests := []struct {
		name, ct, body string
		status         int
		code           string
	}{
		{"no catalog", "application/json", `{}`, 400, CodeBadSpec},
		{"two catalogs", "application/json", `{"catalog_path":"catalog.jsonl","catalog_url":"https://x/c.jsonl"}`, 400, CodeBadSpec},
		{"not json", "application/json", `{`, 400, CodeBadSpec},
		{"unknown field", "application/json", `{"catalog_path":"catalog.jsonl","frob":1}`, 400, CodeBadSpec},
		{"path escapes", "application/json", `{"catalog_path":"../x.jsonl"}`, 403, apierror.CodeForbidden},
		{"absolute path", "application/json", `{"catalog_path":"` + outside + `"}`, 403, apierror.CodeForbidden},
		{"missing file", "application/json", `{"catalog_path":"nope.jsonl"}`, 400, CodeBadSpec},
		{"ftp url", "application/json", `{"catalog_url":"ftp://x/c.jsonl"}`, 400, CodeBadSpec},
		{"bad model", "application/json", `{"catalog_path":"catalog.jsonl","model":"Bad Model"}`, 400, CodeBadSpec},
		{"bad ratio", "application/json", `{"catalog_path":"catalog.jsonl","max_error_ratio":3}`, 400, CodeBadSpec},
		{"bad format", "application/json", `{"catalog_path":"catalog.jsonl","format":"xml"}`, 400, CodeBadSpec},
		{"skip dupes two targets", "application/json", `{"catalog_path":"catalog.jsonl","skip_duplicates":true,"extra_models":["b"]}`, 400, CodeBadSpec},
		{"wrong content type", "text/plain", `hello`, 415, apierror.CodeUnsupportedMedia},
		{"multipart without catalog", "multipart/form-data; boundary=x", "--x--\r\n", 400, CodeBadSpec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := f.do(t, "POST", RouteJobs, tc.ct, []byte(tc.body), "Bearer "+key)
			if code != tc.status || errCode(b) != tc.code {
				t.Fatalf("got %d %s, want %d %s", code, b, tc.status, tc.code)
			}
		})
	}
	for _, p := range []string{RouteJobs + "/nope", RouteJobs + "/nope/report"} {
		if code, b := f.do(t, "GET", p, "", nil, "Bearer "+key); code != 404 || errCode(b) != CodeJobNotFound {
			t.Errorf("GET %s: %d %s", p, code, b)
		}
	}
	if code, b := f.do(t, "DELETE", RouteJobs+"/nope", "", nil, "Bearer "+key); code != 404 || errCode(b) != CodeJobNotFound {
		t.Errorf("DELETE: %d %s", code, b)
	}
}

func TestCancelAndRestart(t *testing.T) {
	f := newFixture(t)
	f.emb.SetLatency(100 * time.Millisecond)
	code, b := f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_path":"catalog.jsonl"}`), "Bearer "+key)
	if code != 202 {
		t.Fatalf("POST: %d %s", code, b)
	}
	var in Info
	json.Unmarshal(b, &in)
	time.Sleep(50 * time.Millisecond)
	for range 2 { // idempotent
		code, b = f.do(t, "DELETE", RouteJobs+"/"+in.ID, "", nil, "Bearer "+key)
		var got Info
		json.Unmarshal(b, &got)
		if code != 200 || got.State != job.StateCanceled || !got.CanceledByUser {
			t.Fatalf("DELETE: %d %s", code, b)
		}
	}
	// A new manager over the same root keeps the user-canceled job as is.
	f.emb.SetLatency(0)
	m2, _ := NewManager(context.Background(), f.root, f.cat, f.m.factory, nil, f.m.log)
	if err := m2.Resume(); err != nil {
		t.Fatal(err)
	}
	got, ok := m2.Get(in.ID)
	if !ok || got.State != job.StateCanceled {
		t.Fatalf("after restart: %+v %v", got, ok)
	}
	m2.Wait()
}

// A job interrupted by a shutdown resumes when the next server starts.
func TestShutdownResumesOnStart(t *testing.T) {
	f := newFixture(t)
	f.emb.SetLatency(50 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	m1, _ := NewManager(ctx, f.root, f.cat, f.m.factory, nil, f.m.log)
	in, err := m1.Start(Spec{CatalogPath: "catalog.jsonl"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	cancel()
	m1.Wait()
	if cp, err := job.ReadCheckpoint(m1.Dir(in.ID)); err != nil || cp.State != job.StateCanceled {
		t.Fatalf("after shutdown: %+v %v", cp, err)
	}
	f.emb.SetLatency(0)
	m2, _ := NewManager(context.Background(), f.root, f.cat, f.m.factory, nil, f.m.log)
	if err := m2.Resume(); err != nil {
		t.Fatal(err)
	}
	m2.Wait()
	got, _ := m2.Get(in.ID)
	if got.State != job.StateCompleted || got.Counts.Done != len(f.want.Indexed) || f.sea.Count("products__fake-a-v1") != len(f.want.Indexed) {
		t.Fatalf("resumed job %+v, points %d", got, f.sea.Count("products__fake-a-v1"))
	}
}

// Local paths in an uploaded catalog are refused (no reading the server's files).
func TestUploadRefusesLocalPaths(t *testing.T) {
	f := newFixture(t)
	code, b := f.do(t, "POST", RouteJobs, "application/x-ndjson", []byte(`{"sku":"A","image":"spec.json"}`+"\n"), "Bearer "+key)
	if code != 202 {
		t.Fatalf("%d %s", code, b)
	}
	var in Info
	json.Unmarshal(b, &in)
	f.waitDone(t, in.ID)
	_, b = f.do(t, "GET", RouteJobs+"/"+in.ID+"/report", "", nil, "Bearer "+key)
	var e job.Entry
	if json.Unmarshal(bytes.TrimSpace(b), &e) != nil || e.Code != job.CodeImagePath {
		t.Fatalf("report %s", b)
	}
}

// A rotated key list (old,new) lets both keys in and nothing else: the
// indexer uses the gateway's admin-key code (shared/adminkey).
func TestRotatedKeyList(t *testing.T) {
	const oldKey, newKey = "old-admin-key-0123456789", "new-admin-key-0123456789"
	f := newFixtureWith(t, oldKey+","+newKey, nil)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer " + oldKey, 200}, {"Bearer " + newKey, 200}, {"bearer " + newKey, 200},
		{"Bearer " + oldKey + "," + newKey, 401}, {"Bearer " + key, 401}, {"Bearer new-admin-key", 401},
	} {
		if code, b := f.do(t, "GET", RouteJobs, "", nil, tc.auth); code != tc.want {
			t.Errorf("%q: %d %s, want %d", tc.auth, code, b, tc.want)
		}
	}
}

// upload is the server's name for an uploaded catalog's file, never a
// caller's field: a spec naming one is refused, whatever it names, and
// nothing of the named file shows.
func TestSpecNamingAnUploadIsRefused(t *testing.T) {
	f := newFixture(t)
	multipartSpec := func(spec string) (string, []byte) {
		var mb bytes.Buffer
		mw := multipart.NewWriter(&mb)
		sw, _ := mw.CreateFormField("spec")
		sw.Write([]byte(spec))
		fw, _ := mw.CreateFormFile("catalog", "c.jsonl")
		fw.Write([]byte(`{"sku":"A","image":"https://example.com/a.jpg"}` + "\n"))
		mw.Close()
		return mw.FormDataContentType(), mb.Bytes()
	}
	tests := []struct{ name, ct, body string }{
		{"json, upload only", "application/json", `{"upload":"../../../../etc/passwd"}`},
		{"json, upload beside a url", "application/json", `{"catalog_url":"https://example.com/c.jsonl","upload":"../../../../etc/passwd"}`},
		{"json, upload beside a path", "application/json", `{"catalog_path":"catalog.jsonl","upload":"/etc/passwd"}`},
		{"json, upload naming the server's own name", "application/json", `{"catalog_path":"catalog.jsonl","upload":"upload.jsonl"}`},
		{"json, upload null", "application/json", `{"catalog_path":"catalog.jsonl","upload":null}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := f.do(t, "POST", RouteJobs, tc.ct, []byte(tc.body), "Bearer "+key)
			if code != 400 || errCode(b) != CodeBadSpec || bytes.Contains(b, []byte("root:")) {
				t.Fatalf("%d %s, want 400 %s", code, b, CodeBadSpec)
			}
		})
	}
	t.Run("multipart spec part", func(t *testing.T) {
		ct, body := multipartSpec(`{"upload":"../../../../etc/passwd"}`)
		code, b := f.do(t, "POST", RouteJobs, ct, body, "Bearer "+key)
		if code != 400 || errCode(b) != CodeBadSpec {
			t.Fatalf("%d %s, want 400 %s", code, b, CodeBadSpec)
		}
	})
	if jobs := f.m.List(); len(jobs) != 0 {
		t.Fatalf("refused specs left jobs: %+v", jobs)
	}
}

// A job folder whose spec.json names files the server did not write (an
// upload path from before the field was the server's, an absolute path
// outside the catalog root) is not run, and its error quotes nothing of
// the named file.
func TestStoredSpecNamingForeignFilesIsNotRun(t *testing.T) {
	f := newFixture(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "passwd")
	os.WriteFile(secret, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644)
	rel, _ := filepath.Rel(filepath.Join(f.root, "job"), secret)
	specs := map[string]string{
		"upload-relative": `{"upload":"` + filepath.ToSlash(rel) + `","format":"csv"}`,
		"upload-absolute": `{"upload":"` + secret + `"}`,
		"path-outside":    `{"catalog_path":"` + secret + `","format":"csv"}`,
		"path-dotdot":     `{"catalog_path":"../` + filepath.Base(secretDir) + `/passwd","format":"csv"}`,
		"no-catalog":      `{"format":"csv"}`,
	}
	for id, spec := range specs {
		os.MkdirAll(filepath.Join(f.root, id), 0o755)
		os.WriteFile(filepath.Join(f.root, id, specFile), []byte(spec), 0o644)
	}
	m, _ := NewManager(context.Background(), f.root, f.cat, f.m.factory, nil, f.m.log)
	if err := m.Resume(); err != nil {
		t.Fatal(err)
	}
	m.Wait()
	for id := range specs {
		got, ok := m.Get(id)
		if !ok || got.State != job.StateFailed || got.Error != errBadStoredSpec.Error() || strings.Contains(got.Error, "root") {
			t.Errorf("%s: %+v", id, got)
		}
	}
}

// catalog_path is looked up through os.Root: a link inside the catalog
// root that leads out of it is refused like a missing file.
func TestCatalogPathLinkOutOfRootRefused(t *testing.T) {
	f := newFixture(t)
	outside := filepath.Join(t.TempDir(), "c.jsonl")
	os.WriteFile(outside, []byte(`{"sku":"A","image":"x.png"}`+"\n"), 0o644)
	if err := os.Symlink(outside, filepath.Join(f.cat, "link.jsonl")); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(f.cat, "dirlink")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"link.jsonl", "dirlink/c.jsonl"} {
		code, b := f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_path":"`+p+`"}`), "Bearer "+key)
		if code != 400 || errCode(b) != CodeBadSpec {
			t.Errorf("%s: %d %s, want 400 %s", p, code, b, CodeBadSpec)
		}
	}
	// A link that stays inside the root is fine.
	os.Symlink("catalog.jsonl", filepath.Join(f.cat, "inside.jsonl"))
	if code, b := f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_path":"inside.jsonl"}`), "Bearer "+key); code != 202 {
		t.Fatalf("link inside the root: %d %s", code, b)
	}
}

// A URL catalog is written into the job's folder as it downloads (the
// downloader gets a file, not a buffer); a failed download leaves no
// partial file and fails the job with the downloader's reason.
func TestCatalogURLDownloadsIntoJobFolder(t *testing.T) {
	var f *fixture
	f = newFixtureWith(t, key, func(ctx context.Context, rawURL string, w io.Writer) error {
		if _, ok := w.(*os.File); !ok {
			return fmt.Errorf("downloader got a %T, not the file in the job folder", w)
		}
		if strings.HasSuffix(rawURL, "/big.jsonl") {
			w.Write([]byte("partial"))
			return errors.New("catalog over the size limit")
		}
		b, err := os.ReadFile(filepath.Join(f.cat, "catalog.jsonl"))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	})
	code, b := f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_url":"https://shop.example/catalog.jsonl"}`), "Bearer "+key)
	if code != 202 {
		t.Fatalf("POST: %d %s", code, b)
	}
	var in Info
	json.Unmarshal(b, &in)
	// The fixture's catalog lists local image paths, which a URL catalog
	// resolves as URLs: the job runs to its report, every line failing.
	if got := f.waitDone(t, in.ID); got.Counts.Items != f.want.Items {
		t.Fatalf("job %+v, want %d items", got, f.want.Items)
	}
	if _, err := os.Stat(filepath.Join(f.m.Dir(in.ID), "catalog.jsonl")); err != nil {
		t.Fatalf("catalog not in the job folder: %v", err)
	}
	code, b = f.do(t, "POST", RouteJobs, "application/json", []byte(`{"catalog_url":"https://shop.example/big.jsonl"}`), "Bearer "+key)
	if code != 202 {
		t.Fatalf("POST: %d %s", code, b)
	}
	json.Unmarshal(b, &in)
	got := f.waitDone(t, in.ID)
	if got.State != job.StateFailed || !strings.Contains(got.Error, "over the size limit") {
		t.Fatalf("job %+v", got)
	}
	ents, _ := os.ReadDir(f.m.Dir(in.ID))
	for _, e := range ents {
		if strings.Contains(e.Name(), "catalog") {
			t.Fatalf("left %s behind", e.Name())
		}
	}
}
