package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/lookalike-dev/lookalike/gateway/internal/pipeline"
	"github.com/lookalike-dev/lookalike/shared/apierror"
	"github.com/lookalike-dev/lookalike/shared/bufpool"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"github.com/lookalike-dev/lookalike/shared/contract/searchv1"
	"github.com/lookalike-dev/lookalike/shared/readall"
)

// Codes of the gateway's own refusals.
const (
	CodeMissingImage    = "missing_image"
	CodeMissingSKU      = "missing_sku"
	CodeInvalidSKU      = "invalid_sku"
	CodeInvalidMetadata = "invalid_metadata"
	CodeInvalidJSON     = "invalid_json"
	CodeBadMultipart    = "bad_multipart"
	CodeAmbiguousQuery  = "ambiguous_query"
)

// MaxSKULen bounds a SKU.
const MaxSKULen = 256

// DefaultTopK is used when a query names none.
const DefaultTopK = 10

func invalid(format string, args ...any) *apierror.Error {
	return apierror.BadRequest(apierror.CodeInvalidArgument, format, args...)
}

// checkSKU validates a SKU.
func checkSKU(sku string) error {
	if sku == "" {
		return apierror.BadRequest(CodeMissingSKU, "a sku is required")
	}
	if len(sku) > MaxSKULen {
		return apierror.BadRequest(CodeInvalidSKU, "sku is longer than %d bytes", MaxSKULen)
	}
	for _, r := range sku {
		if unicode.IsControl(r) || r == '/' || r == unicode.ReplacementChar {
			return apierror.BadRequest(CodeInvalidSKU, "sku contains a control character, slash or invalid utf-8")
		}
	}
	return nil
}

// searchInput is a parsed search request.
type searchInput struct {
	Image    []byte
	ImageURL string
	SKU      string
	Query    pipeline.Query
	form     *form
}

// release hands back the pooled buffers of the parsed body; whoever still
// reads the image retained Query.ImageHold.
func (in *searchInput) release() {
	if in.form != nil {
		in.form.release()
	}
}

// applyValues reads the parameters from form or query values.
func applyValues(v url.Values, r *gatewayv1.SearchRequest) error {
	get := func(k string) string { return strings.TrimSpace(v.Get(k)) }
	if s := get("image_url"); s != "" {
		r.ImageURL = s
	}
	if s := get("sku"); s != "" {
		r.SKU = s
	}
	if s := get("model"); s != "" {
		r.Model = s
	}
	if s := get("top_k"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return invalid("top_k %q is not an integer", s)
		}
		r.TopK = &n
	}
	if s := get("min_score"); s != "" {
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return invalid("min_score %q is not a number", s)
		}
		f32 := float32(f)
		r.MinScore = &f32
	}
	f := r.Filters
	if f == nil {
		f = &gatewayv1.Filters{}
	}
	for _, k := range []string{"category", "brand"} {
		var vals gatewayv1.List
		for _, x := range v[k] {
			vals = append(vals, gatewayv1.SplitList(x)...)
		}
		if len(vals) > 0 {
			if k == "category" {
				f.Category = vals
			} else {
				f.Brand = vals
			}
		}
	}
	for _, k := range []string{"price_min", "price_max"} {
		if s := get(k); s != "" {
			p, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return invalid("%s %q is not a number", k, s)
			}
			if k == "price_min" {
				f.PriceMin = &p
			} else {
				f.PriceMax = &p
			}
		}
	}
	if s := get("in_stock"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return invalid("in_stock %q is not true or false", s)
		}
		f.InStock = &b
	}
	if f.Category != nil || f.Brand != nil || f.PriceMin != nil || f.PriceMax != nil || f.InStock != nil {
		r.Filters = f
	}
	return nil
}

// toQuery validates the parameters.
func toQuery(r gatewayv1.SearchRequest) (pipeline.Query, error) {
	q := pipeline.Query{Model: r.Model, TopK: DefaultTopK, MinScore: r.MinScore}
	if r.TopK != nil {
		if *r.TopK < 1 || *r.TopK > searchv1.MaxTopK {
			return q, invalid("top_k must be between 1 and %d", searchv1.MaxTopK)
		}
		q.TopK = *r.TopK
	}
	if r.MinScore != nil && (math.IsNaN(float64(*r.MinScore)) || *r.MinScore < -1 || *r.MinScore > 1) {
		return q, invalid("min_score must be between -1 and 1")
	}
	if r.Model != "" && !searchv1.ValidName(r.Model) {
		return q, invalid("model %q is not a valid model id", r.Model)
	}
	if f := r.Filters; f != nil {
		for _, p := range []*float64{f.PriceMin, f.PriceMax} {
			if p != nil && (math.IsNaN(*p) || math.IsInf(*p, 0)) {
				return q, invalid("prices must be finite numbers")
			}
		}
		if f.PriceMin != nil && f.PriceMax != nil && *f.PriceMin > *f.PriceMax {
			return q, invalid("price_min is above price_max")
		}
		q.Filter = &searchv1.Filter{Category: []string(f.Category), Brand: []string(f.Brand), PriceMin: f.PriceMin, PriceMax: f.PriceMax, InStock: f.InStock}
	}
	return q, nil
}

// readBody reads a limited request body, mapping the limit to a 413.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := readall.ReadAll(http.MaxBytesReader(nil, r.Body, limit), readall.Hint(r.ContentLength, limit, maxReserve))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		return nil, apierror.Wrap(err, http.StatusBadRequest, apierror.CodeBadRequest, "reading the request body failed")
	}
	return b, nil
}

// maxReserve bounds the memory a declared Content-Length reserves before
// the bytes arrive; bigger bodies grow by doubling as they come.
const maxReserve = 4 << 20

func tooLarge(limit int64) *apierror.Error {
	return apierror.New(http.StatusRequestEntityTooLarge, apierror.CodePayloadTooLarge, "request body is over the %d byte limit", limit)
}

// form is a parsed multipart body: text fields, and file parts' bytes.
type form struct {
	Value map[string][]string
	File  map[string][][]byte
	// leases hold the file parts read into pooled buffers, by field, in
	// File's order.
	leases map[string][]*bufpool.Lease
}

// hold is the lease of the first file part named field, nil when it is
// not pooled.
func (f *form) hold(field string) *bufpool.Lease {
	if ls := f.leases[field]; len(ls) > 0 {
		return ls[0]
	}
	return nil
}

// release drops the form's reference to each pooled file part.
func (f *form) release() {
	for _, ls := range f.leases {
		for _, l := range ls {
			l.Release()
		}
	}
	f.leases = nil
}

// file returns the bytes of the first file part named field, or nil.
func (f *form) file(field string) []byte {
	if fs := f.File[field]; len(fs) > 0 {
		return fs[0]
	}
	return nil
}

// Bounds of a multipart body besides its byte limit.
const (
	maxFormParts      = 64
	maxFormValueBytes = 1 << 20 // all text fields together
)

// multipartForm parses a multipart body of at most limit bytes as it
// arrives: each part is read once, straight into its own buffer (the first
// file part sized from Content-Length), never buffered whole first.
//
// With buffers, file parts are read into pooled buffers held by the form's
// leases: the caller calls release once done, on success or failure.
func multipartForm(r *http.Request, limit int64, buffers *uploadBuffers) (_ *form, err error) {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		return nil, apierror.BadRequest(CodeBadMultipart, "multipart body without a boundary")
	}
	bad := func(err error) error {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, bufpool.ErrTooLarge) {
			return tooLarge(limit)
		}
		return apierror.Wrap(err, http.StatusBadRequest, CodeBadMultipart, "the multipart body does not parse")
	}
	// The multipart reader peeks 4 KiB at a time; a larger buffer under it
	// reads the socket in 256 KiB syscalls rather than 4 KiB ones.
	br := buffers.get(http.MaxBytesReader(nil, r.Body, limit))
	defer buffers.put(br)
	mr := multipart.NewReader(br, params["boundary"])
	f := &form{Value: map[string][]string{}, File: map[string][][]byte{}, leases: map[string][]*bufpool.Lease{}}
	defer func() {
		if err != nil {
			f.release()
		}
	}()
	hint := readall.Hint(r.ContentLength, limit, maxReserve)
	valueBytes := 0
	for parts := 0; ; parts++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			return f, nil
		}
		if err != nil {
			return nil, bad(err)
		}
		if parts == maxFormParts {
			return nil, apierror.BadRequest(CodeBadMultipart, "the multipart body has more than %d parts", maxFormParts)
		}
		name := p.FormName()
		if name == "" {
			continue
		}
		if p.FileName() == "" {
			b, err := io.ReadAll(io.LimitReader(p, int64(maxFormValueBytes-valueBytes)+1))
			if err != nil {
				return nil, bad(err)
			}
			if valueBytes += len(b); valueBytes > maxFormValueBytes {
				return nil, apierror.BadRequest(CodeBadMultipart, "the text fields are over %d bytes together", maxFormValueBytes)
			}
			f.Value[name] = append(f.Value[name], string(b))
			continue
		}
		b, err := buffers.filePool().ReadAll(p, hint, int(limit))
		if err != nil {
			return nil, bad(err)
		}
		if buffers != nil {
			f.leases[name] = append(f.leases[name], buffers.files.Lease(b))
		}
		hint = 0 // only the first file may take the whole body's size
		f.File[name] = append(f.File[name], b)
	}
}

// uploadBuffers recycles what reading an upload allocates: the 256 KiB
// buffered reader under the multipart parser and the file parts' bytes
// (a photo is ~700 KB; allocated per query, its zeroing and page faults
// were a fifth of the gateway's CPU). A nil *uploadBuffers allocates.
type uploadBuffers struct {
	readers sync.Pool
	files   bufpool.Pool
}

func (s *uploadBuffers) get(r io.Reader) *bufio.Reader {
	if s != nil {
		if br, ok := s.readers.Get().(*bufio.Reader); ok {
			br.Reset(r)
			return br
		}
	}
	return bufio.NewReaderSize(r, 256<<10)
}

// filePool is the pool for file parts; nil (allocate) without buffers.
func (s *uploadBuffers) filePool() *bufpool.Pool {
	if s == nil {
		return nil
	}
	return &s.files
}

func (s *uploadBuffers) put(br *bufio.Reader) {
	if s != nil {
		br.Reset(nil) // drop the request body
		s.readers.Put(br)
	}
}

// mediaType is the request's Content-Type without parameters.
func mediaType(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return strings.ToLower(mt)
}

// parseSearch reads a search request in any of its forms: multipart with an
// "image" file, JSON {"image_url"} or {"sku"}, or a raw image body; the
// parameters come from the query string and the form or JSON body.
//
// The caller calls release on the result, whatever the error.
func parseSearch(r *http.Request, limit int64, buffers *uploadBuffers) (searchInput, error) {
	var req gatewayv1.SearchRequest
	var in searchInput
	if err := applyValues(r.URL.Query(), &req); err != nil {
		return in, err
	}
	switch mt := mediaType(r); {
	case mt == "multipart/form-data":
		form, err := multipartForm(r, limit, buffers)
		if err != nil {
			return in, err
		}
		in.form = form
		if err := applyValues(url.Values(form.Value), &req); err != nil {
			return in, err
		}
		in.Image = form.file("image")
		if len(form.File["image"]) > 0 && len(in.Image) == 0 {
			return in, apierror.BadRequest(CodeMissingImage, "the image part is empty")
		}
	case mt == "application/json":
		b, err := readBody(r, 64<<10)
		if err != nil {
			return in, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var body gatewayv1.SearchRequest
		if err := dec.Decode(&body); err != nil {
			return in, apierror.Wrap(err, http.StatusBadRequest, CodeInvalidJSON, "the JSON body does not parse: %v", err)
		}
		merge(&req, body)
	case strings.HasPrefix(mt, "image/") || mt == "application/octet-stream":
		b, err := readBody(r, limit)
		if err != nil {
			return in, err
		}
		in.Image = b
	case mt == "" && r.ContentLength <= 0:
	default:
		return in, apierror.New(http.StatusUnsupportedMediaType, apierror.CodeUnsupportedMedia,
			"send multipart/form-data with an image, JSON with image_url or sku, or an image body")
	}
	in.ImageURL, in.SKU = req.ImageURL, req.SKU
	n := 0
	for _, set := range []bool{len(in.Image) > 0, in.ImageURL != "", in.SKU != ""} {
		if set {
			n++
		}
	}
	if n == 0 {
		return in, apierror.BadRequest(CodeMissingImage, "send an image (multipart field \"image\"), an image_url or a sku")
	}
	if n > 1 {
		return in, apierror.BadRequest(CodeAmbiguousQuery, "send only one of image, image_url and sku")
	}
	if in.SKU != "" {
		if err := checkSKU(in.SKU); err != nil {
			return in, err
		}
	}
	q, err := toQuery(req)
	if in.form != nil {
		if h := in.form.hold("image"); h != nil && len(in.Image) > 0 {
			q.ImageHold = h
		}
	}
	in.Query = q
	return in, err
}

// merge lays the JSON body over the query-string parameters.
func merge(dst *gatewayv1.SearchRequest, src gatewayv1.SearchRequest) {
	if src.ImageURL != "" {
		dst.ImageURL = src.ImageURL
	}
	if src.SKU != "" {
		dst.SKU = src.SKU
	}
	if src.TopK != nil {
		dst.TopK = src.TopK
	}
	if src.MinScore != nil {
		dst.MinScore = src.MinScore
	}
	if src.Model != "" {
		dst.Model = src.Model
	}
	if src.Filters != nil {
		dst.Filters = src.Filters
	}
}

// parseMetadata reads a product's metadata JSON object ("" is {}).
func parseMetadata(s string) (searchv1.Payload, error) {
	p := searchv1.Payload{}
	if strings.TrimSpace(s) == "" {
		return p, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, apierror.Wrap(err, http.StatusBadRequest, CodeInvalidMetadata, "metadata is not valid JSON")
	}
	if dec.More() {
		return nil, apierror.BadRequest(CodeInvalidMetadata, "metadata has trailing data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, apierror.BadRequest(CodeInvalidMetadata, "metadata must be a JSON object")
	}
	for k, val := range m {
		if n, ok := val.(json.Number); ok {
			f, err := n.Float64()
			if err != nil {
				return nil, apierror.BadRequest(CodeInvalidMetadata, "metadata field %q is not a usable number", k)
			}
			val = f
		}
		p[k] = val
	}
	return p, nil
}

// decodeStrict decodes one JSON value, refusing unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}
