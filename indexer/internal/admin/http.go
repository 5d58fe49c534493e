package admin

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lookalike-dev/lookalike/indexer/internal/job"
	"github.com/lookalike-dev/lookalike/shared/adminkey"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
)

// Routes.
const (
	RouteJobs   = "/v1/index/jobs"
	RouteJob    = "/v1/index/jobs/:id"
	RouteReport = "/v1/index/jobs/:id/report"
)

// Error codes.
const (
	CodeBadSpec     = "bad_job_spec"
	CodeJobNotFound = "job_not_found"
)

// API serves the admin routes.
type API struct {
	M *Manager
	// Keys are the admin keys callers send as "Authorization: Bearer <key>"
	// (the suite's shared admin-key code; nil refuses every request).
	Keys *adminkey.Keys
	// MaxUpload bounds an uploaded catalog.
	MaxUpload int64
}

// Register adds the routes to e, behind the key check.
func (a *API) Register(e *echo.Echo) {
	g := e.Group("", a.auth)
	g.POST(RouteJobs, a.start)
	g.GET(RouteJobs, a.list)
	g.GET(RouteJob, a.get)
	g.DELETE(RouteJob, a.cancel)
	g.GET(RouteReport, a.report)
}

func (a *API) auth(next echo.HandlerFunc) echo.HandlerFunc {
	if a.Keys == nil {
		return func(echo.Context) error {
			return apierror.New(http.StatusUnauthorized, apierror.CodeUnauthorized, "no admin key is configured")
		}
	}
	return a.Keys.Middleware()(next)
}

// decodeSpec reads a JSON job spec. Unknown fields are refused, and so is
// upload: the server names an uploaded catalog's file, never the caller.
func decodeSpec(r io.Reader, what string) (Spec, error) {
	var in struct {
		Spec
		Upload json.RawMessage `json:"upload"`
	}
	dec := json.NewDecoder(io.LimitReader(r, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Spec{}, apierror.BadRequest(CodeBadSpec, "%s is not a job spec: %v", what, err)
	}
	if in.Upload != nil {
		return Spec{}, apierror.BadRequest(CodeBadSpec, "upload is not a spec field: send the catalog as the body (application/x-ndjson, text/csv) or as the multipart part \"catalog\"")
	}
	return in.Spec, nil
}

func (a *API) start(c echo.Context) error {
	req := c.Request()
	var s Spec
	ct := req.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "multipart/form-data"):
		mr, err := req.MultipartReader()
		if err != nil {
			return apierror.BadRequest(CodeBadSpec, "reading multipart: %v", err)
		}
		// Parts: optional "spec" (JSON) first, then "catalog" (the file).
		for {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return apierror.BadRequest(CodeBadSpec, "reading multipart: %v", err)
			}
			switch p.FormName() {
			case "spec":
				if s, err = decodeSpec(p, "spec part"); err != nil {
					return err
				}
			case "catalog":
				if s.Format == "" && strings.HasSuffix(strings.ToLower(p.FileName()), ".csv") {
					s.Format = "csv"
				}
				if err := a.checkSpec(&s, true); err != nil {
					return err
				}
				lim := &limitedReader{r: p, n: a.maxUpload()}
				info, err := a.M.Start(s, lim)
				if lim.over {
					return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "catalog upload is over %d bytes", a.maxUpload())
				}
				if err != nil {
					return err
				}
				return a.accepted(c, info)
			}
		}
		return apierror.BadRequest(CodeBadSpec, "multipart upload has no catalog part")
	case strings.HasPrefix(ct, "application/json"):
		var err error
		if s, err = decodeSpec(req.Body, "body"); err != nil {
			return err
		}
	case strings.HasPrefix(ct, "application/x-ndjson"), strings.HasPrefix(ct, "text/csv"):
		q := req.URL.Query()
		s = Spec{Model: q.Get("model"), CatalogName: q.Get("catalog_name"), Format: "jsonl"}
		if strings.HasPrefix(ct, "text/csv") {
			s.Format = "csv"
		}
		if err := a.checkSpec(&s, true); err != nil {
			return err
		}
		lim := &limitedReader{r: req.Body, n: a.maxUpload()}
		info, err := a.M.Start(s, lim)
		if lim.over {
			return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "catalog upload is over %d bytes", a.maxUpload())
		}
		if err != nil {
			return err
		}
		return a.accepted(c, info)
	default:
		return apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia, "send application/json (catalog_url or catalog_path), multipart/form-data (spec + catalog), application/x-ndjson or text/csv")
	}
	if err := a.checkSpec(&s, false); err != nil {
		return err
	}
	info, err := a.M.Start(s, nil)
	if err != nil {
		return err
	}
	return a.accepted(c, info)
}

func (a *API) maxUpload() int64 {
	if a.MaxUpload > 0 {
		return a.MaxUpload
	}
	return 1 << 30
}

type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		l.over = true
		return 0, errors.New("upload too large")
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		l.over = true
		return n, errors.New("upload too large")
	}
	return n, err
}

func (a *API) accepted(c echo.Context, info Info) error {
	c.Response().Header().Set("Location", RouteJobs+"/"+info.ID)
	return c.JSON(http.StatusAccepted, info)
}

// checkSpec validates a spec; upload says the catalog is in the request.
func (a *API) checkSpec(s *Spec, upload bool) error {
	n := 0
	if s.CatalogURL != "" {
		n++
		u, err := url.Parse(s.CatalogURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return apierror.BadRequest(CodeBadSpec, "catalog_url must be an http(s) URL")
		}
	}
	if s.CatalogPath != "" {
		n++
		if err := a.checkCatalogPath(s); err != nil {
			return err
		}
	}
	if upload {
		n++
	}
	if n != 1 {
		return apierror.BadRequest(CodeBadSpec, "name exactly one catalog: catalog_url, catalog_path or an upload")
	}
	if s.Format != "" && s.Format != "jsonl" && s.Format != "csv" {
		return apierror.BadRequest(CodeBadSpec, "format must be jsonl or csv")
	}
	for _, m := range append([]string{s.Model}, s.ExtraModels...) {
		if m != "" && !searchv1.ValidName(m) {
			return apierror.BadRequest(CodeBadSpec, "model %q is not a valid name", m)
		}
	}
	if s.CatalogName != "" && !searchv1.ValidName(s.CatalogName) {
		return apierror.BadRequest(CodeBadSpec, "catalog_name %q is not a valid name", s.CatalogName)
	}
	if s.MaxErrorRatio < 0 || s.MaxErrorRatio > 1 || s.NearDuplicateScore < 0 {
		return apierror.BadRequest(CodeBadSpec, "max_error_ratio must be in 0..1 and near_duplicate_score >= 0")
	}
	if s.SkipDuplicates && len(s.ExtraModels) > 0 {
		return apierror.BadRequest(CodeBadSpec, "skip_duplicates works with one target only")
	}
	return nil
}

// checkCatalogPath keeps s.CatalogPath a clean path that names a regular
// file inside the catalog root, looked up through os.Root so that a
// symlink out of the root is refused too.
func (a *API) checkCatalogPath(s *Spec) error {
	croot := a.M.CatalogRoot()
	if croot == "" {
		return apierror.New(http.StatusForbidden, apierror.CodeForbidden, "catalog_path is off on this server (no catalog root); send catalog_url or upload")
	}
	rel := filepath.Clean(filepath.FromSlash(s.CatalogPath))
	if !filepath.IsLocal(rel) {
		return apierror.New(http.StatusForbidden, apierror.CodeForbidden, "catalog_path must be relative to the catalog root and stay inside it")
	}
	root, err := os.OpenRoot(croot)
	if err != nil {
		return apierror.Wrap(err, http.StatusServiceUnavailable, apierror.CodeUnavailable, "the catalog root cannot be opened")
	}
	defer root.Close()
	// A link that leads out of the root fails here like a missing file.
	if st, err := root.Stat(rel); err != nil || !st.Mode().IsRegular() {
		return apierror.BadRequest(CodeBadSpec, "catalog_path %q is not a file under the catalog root", s.CatalogPath)
	}
	s.CatalogPath = filepath.ToSlash(rel)
	return nil
}

func (a *API) list(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"jobs": a.M.List()})
}

func (a *API) get(c echo.Context) error {
	info, ok := a.M.Get(c.Param("id"))
	if !ok {
		return apierror.New(http.StatusNotFound, CodeJobNotFound, "no job %q", c.Param("id"))
	}
	return c.JSON(http.StatusOK, info)
}

func (a *API) cancel(c echo.Context) error {
	info, ok := a.M.Cancel(c.Param("id"))
	if !ok {
		return apierror.New(http.StatusNotFound, CodeJobNotFound, "no job %q", c.Param("id"))
	}
	return c.JSON(http.StatusOK, info)
}

// report streams the report lines covered by the last checkpoint (JSONL;
// at most a checkpoint period behind a running job), optionally only those
// with ?status=failed (or done, skipped, superseded).
func (a *API) report(c echo.Context) error {
	id := c.Param("id")
	if _, ok := a.M.Get(id); !ok {
		return apierror.New(http.StatusNotFound, CodeJobNotFound, "no job %q", id)
	}
	want := c.QueryParam("status")
	switch want {
	case "", job.StatusDone, job.StatusFailed, job.StatusSkipped, job.StatusSuperseded:
	default:
		return apierror.BadRequest(apierror.CodeInvalidArgument, "status must be done, failed, skipped or superseded")
	}
	f, err := os.Open(filepath.Join(a.M.Dir(id), job.ReportFile))
	if errors.Is(err, os.ErrNotExist) {
		c.Response().Header().Set("Content-Type", "application/x-ndjson")
		return c.NoContent(http.StatusOK)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var size int64
	if cp, err := job.ReadCheckpoint(a.M.Dir(id)); err == nil {
		size = cp.ReportBytes
	}
	w := c.Response()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	sc := bufio.NewScanner(io.LimitReader(f, size))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	bw := bufio.NewWriter(w)
	for sc.Scan() {
		line := sc.Bytes()
		if want != "" {
			var e struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(line, &e) != nil || e.Status != want {
				continue
			}
		}
		bw.Write(line)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
