// Package catalog parses product catalogs for indexing: JSONL (one JSON
// object a line) or CSV (a header row naming the columns). Each line becomes
// a Product or a per-line *LineError; one bad line never stops the reader.
// Standard library only, so the indexer and the gateway can both use it.
//
// Well-known fields: sku (required), image (required: a URL or a path
// relative to the catalog file's folder), title, category, brand, price
// (number or numeric string), in_stock (bool, or "true"/"false"/"yes"/"no"/
// "1"/"0"). Every other field is kept in Product.Extra.
package catalog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Format is a catalog file format.
type Format string

// Formats.
const (
	JSONL Format = "jsonl"
	CSV   Format = "csv"
)

// Limits.
const (
	// MaxLineBytes bounds one catalog line (JSONL) or record (CSV).
	MaxLineBytes = 1 << 20
	// MaxSKULen bounds a SKU.
	MaxSKULen = 256
	// MaxImageLen bounds the image reference.
	MaxImageLen = 4096
)

// Error codes of a LineError.
const (
	CodeBadJSON       = "bad_json"
	CodeBadCSV        = "bad_csv"
	CodeLineTooLong   = "line_too_long"
	CodeMissingSKU    = "missing_sku"
	CodeBadSKU        = "bad_sku"
	CodeMissingImage  = "missing_image"
	CodeBadImage      = "bad_image_ref"
	CodeBadPrice      = "bad_price"
	CodeBadInStock    = "bad_in_stock"
	CodeBadFieldType  = "bad_field_type"
	CodeBadEncoding   = "bad_encoding"
	CodeMissingHeader = "missing_header"
)

// Product is one catalog entry.
type Product struct {
	SKU      string         `json:"sku"`
	Image    string         `json:"image"`
	Title    string         `json:"title,omitempty"`
	Category string         `json:"category,omitempty"`
	Brand    string         `json:"brand,omitempty"`
	Price    *float64       `json:"price,omitempty"`
	InStock  *bool          `json:"in_stock,omitempty"`
	Extra    map[string]any `json:"extra,omitempty"`
}

// Payload returns the product as a flat map (well-known keys plus Extra),
// the shape search keeps with a point. Well-known keys win over Extra.
func (p Product) Payload() map[string]any {
	m := make(map[string]any, len(p.Extra)+7)
	for k, v := range p.Extra {
		m[k] = v
	}
	m["sku"] = p.SKU
	m["image"] = p.Image
	setNonEmpty := func(k, v string) {
		if v != "" {
			m[k] = v
		} else {
			delete(m, k)
		}
	}
	setNonEmpty("title", p.Title)
	setNonEmpty("category", p.Category)
	setNonEmpty("brand", p.Brand)
	if p.Price != nil {
		m["price"] = *p.Price
	} else {
		delete(m, "price")
	}
	if p.InStock != nil {
		m["in_stock"] = *p.InStock
	} else {
		delete(m, "in_stock")
	}
	return m
}

// IsURL reports whether the image reference is an http(s) URL.
func (p Product) IsURL() bool {
	l := strings.ToLower(p.Image)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://")
}

// LineError is a problem with one line. SKU is set when it could be read.
type LineError struct {
	Line    int    `json:"line"`
	Code    string `json:"code"`
	Message string `json:"message"`
	SKU     string `json:"sku,omitempty"`
}

func (e *LineError) Error() string {
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Code, e.Message)
}

// Record is one parsed line: Product when Err is nil.
type Record struct {
	// Line is the 1-based number of the record among the data lines of the
	// file: for JSONL the physical line, for CSV the record after the
	// header (a quoted field may span physical lines).
	Line    int
	Product Product
	Err     *LineError
}

// DetectFormat picks the format from a file name or URL path: .csv is CSV,
// anything else (.jsonl, .ndjson, .json) JSONL.
func DetectFormat(name string) Format {
	if i := strings.IndexAny(name, "?#"); i >= 0 {
		name = name[:i]
	}
	if strings.EqualFold(path.Ext(name), ".csv") {
		return CSV
	}
	return JSONL
}

// Reader reads records one at a time.
type Reader struct {
	format Format
	line   int
	// JSONL
	br *bufio.Reader
	// CSV
	cr      *csv.Reader
	header  []string
	hdrErr  error
	started bool
}

// NewReader reads a catalog of the given format from r.
func NewReader(r io.Reader, f Format) *Reader {
	rd := &Reader{format: f}
	if f == CSV {
		rd.cr = csv.NewReader(r)
		rd.cr.ReuseRecord = false
		rd.cr.FieldsPerRecord = -1
		rd.cr.TrimLeadingSpace = true
	} else {
		rd.br = bufio.NewReaderSize(r, 64<<10)
	}
	return rd
}

// Next returns the next record, or io.EOF at the end. Any other returned
// error is an I/O error of the underlying reader (or a CSV file without a
// usable header), after which the reader is done; line-level problems come
// back in Record.Err with a nil error.
func (r *Reader) Next() (Record, error) {
	if r.format == CSV {
		return r.nextCSV()
	}
	return r.nextJSONL()
}

func (r *Reader) nextJSONL() (Record, error) {
	for {
		line, tooLong, err := readLine(r.br)
		if err != nil && (err != io.EOF || (len(line) == 0 && !tooLong)) {
			return Record{}, err
		}
		r.line++
		if tooLong {
			return Record{Line: r.line, Err: &LineError{Line: r.line, Code: CodeLineTooLong, Message: fmt.Sprintf("line is over %d bytes", MaxLineBytes)}}, nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			if err == io.EOF {
				return Record{}, io.EOF
			}
			continue // blank lines are not records
		}
		p, lerr := ParseJSONLine(line)
		if lerr != nil {
			lerr.Line = r.line
			return Record{Line: r.line, Err: lerr}, nil
		}
		return Record{Line: r.line, Product: p}, nil
	}
}

// readLine reads one line without its newline, at most MaxLineBytes; a longer
// line is consumed and reported as tooLong.
func readLine(br *bufio.Reader) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineBytes+1 {
			tooLong = true
			buf = buf[:0]
		} else if !tooLong {
			buf = append(buf, chunk...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		buf = bytes.TrimRight(buf, "\r\n")
		if tooLong {
			return nil, true, err
		}
		return buf, false, err
	}
}

// ParseJSONLine parses one JSONL line into a Product. The returned error's
// Line is 0; the Reader fills it in.
func ParseJSONLine(line []byte) (Product, *LineError) {
	if !utf8.Valid(line) {
		return Product{}, &LineError{Code: CodeBadEncoding, Message: "line is not valid UTF-8"}
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return Product{}, &LineError{Code: CodeBadJSON, Message: fmt.Sprintf("not a JSON object: %v", err)}
	}
	if dec.More() {
		return Product{}, &LineError{Code: CodeBadJSON, Message: "more than one JSON value on the line"}
	}
	if m == nil {
		return Product{}, &LineError{Code: CodeBadJSON, Message: "not a JSON object: null"}
	}
	return fromMap(m, false)
}

func (r *Reader) nextCSV() (Record, error) {
	if !r.started {
		r.started = true
		hdr, err := r.cr.Read()
		if err != nil {
			if err == io.EOF {
				r.hdrErr = fmt.Errorf("%s: empty CSV catalog", CodeMissingHeader)
			} else {
				r.hdrErr = fmt.Errorf("%s: reading CSV header: %w", CodeMissingHeader, err)
			}
		} else {
			r.header = make([]string, len(hdr))
			seen := map[string]bool{}
			for i, h := range hdr {
				h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
				r.header[i] = h
				seen[h] = true
			}
			if !seen["sku"] || !seen["image"] {
				// The header is not quoted: a file that is no catalog must not
				// have its first line copied into a job's error.
				r.hdrErr = fmt.Errorf("%s: the CSV header (%d columns) has no sku or no image column", CodeMissingHeader, len(hdr))
			}
		}
	}
	if r.hdrErr != nil {
		return Record{}, r.hdrErr
	}
	for {
		rec, err := r.cr.Read()
		if err == io.EOF {
			return Record{}, io.EOF
		}
		r.line++
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return Record{}, err
		}
		if err != nil {
			return Record{Line: r.line, Err: &LineError{Line: r.line, Code: CodeBadCSV, Message: pe.Err.Error()}}, nil
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			r.line--
			continue
		}
		if len(rec) != len(r.header) {
			return Record{Line: r.line, Err: &LineError{Line: r.line, Code: CodeBadCSV, Message: fmt.Sprintf("record has %d fields, header has %d", len(rec), len(r.header))}}, nil
		}
		size := 0
		for _, f := range rec {
			size += len(f)
		}
		if size > MaxLineBytes {
			return Record{Line: r.line, Err: &LineError{Line: r.line, Code: CodeLineTooLong, Message: fmt.Sprintf("record is over %d bytes", MaxLineBytes)}}, nil
		}
		m := make(map[string]any, len(rec))
		for i, f := range rec {
			if !utf8.ValidString(f) {
				return Record{Line: r.line, Err: &LineError{Line: r.line, Code: CodeBadEncoding, Message: fmt.Sprintf("field %q is not valid UTF-8", r.header[i])}}, nil
			}
			if r.header[i] == "" {
				continue
			}
			m[r.header[i]] = f
		}
		p, lerr := fromMap(m, true)
		if lerr != nil {
			lerr.Line = r.line
			return Record{Line: r.line, Err: lerr}, nil
		}
		return Record{Line: r.line, Product: p}, nil
	}
}

// fromMap builds a Product from decoded fields. In CSV every value is a
// string and an empty optional field means absent.
func fromMap(m map[string]any, fromCSV bool) (Product, *LineError) {
	var p Product
	str := func(key string) (string, *LineError) {
		v, ok := m[key]
		if !ok || v == nil {
			return "", nil
		}
		switch x := v.(type) {
		case string:
			return strings.TrimSpace(x), nil
		case json.Number:
			return x.String(), nil
		}
		return "", &LineError{Code: CodeBadFieldType, Message: fmt.Sprintf("%s must be a string", key)}
	}
	var err *LineError
	if p.SKU, err = str("sku"); err != nil {
		return p, err
	}
	if p.SKU == "" {
		return p, &LineError{Code: CodeMissingSKU, Message: "sku is missing or empty"}
	}
	if len(p.SKU) > MaxSKULen || strings.IndexFunc(p.SKU, unicode.IsControl) >= 0 {
		return Product{}, &LineError{Code: CodeBadSKU, Message: fmt.Sprintf("sku must be at most %d bytes without control characters", MaxSKULen)}
	}
	fail := func(e *LineError) (Product, *LineError) {
		e.SKU = p.SKU
		return Product{}, e
	}
	if p.Image, err = str("image"); err != nil {
		return fail(err)
	}
	if p.Image == "" {
		return fail(&LineError{Code: CodeMissingImage, Message: "image is missing or empty"})
	}
	if len(p.Image) > MaxImageLen || strings.IndexFunc(p.Image, unicode.IsControl) >= 0 {
		return fail(&LineError{Code: CodeBadImage, Message: fmt.Sprintf("image must be at most %d bytes without control characters", MaxImageLen)})
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"title", &p.Title}, {"category", &p.Category}, {"brand", &p.Brand}} {
		if *f.dst, err = str(f.key); err != nil {
			return fail(err)
		}
	}
	if v, ok := m["price"]; ok && v != nil && v != "" {
		var s string
		switch x := v.(type) {
		case json.Number:
			s = x.String()
		case string:
			s = strings.TrimSpace(x)
		default:
			return fail(&LineError{Code: CodeBadPrice, Message: "price must be a number"})
		}
		f, perr := strconv.ParseFloat(s, 64)
		if perr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return fail(&LineError{Code: CodeBadPrice, Message: fmt.Sprintf("price %q is not a non-negative number", s)})
		}
		p.Price = &f
	}
	if v, ok := m["in_stock"]; ok && v != nil && v != "" {
		var b bool
		switch x := v.(type) {
		case bool:
			b = x
		case string, json.Number:
			s := strings.ToLower(strings.TrimSpace(fmt.Sprint(x)))
			switch s {
			case "true", "yes", "y", "1":
				b = true
			case "false", "no", "n", "0":
				b = false
			default:
				return fail(&LineError{Code: CodeBadInStock, Message: fmt.Sprintf("in_stock %q is not a boolean", s)})
			}
		default:
			return fail(&LineError{Code: CodeBadInStock, Message: "in_stock must be a boolean"})
		}
		p.InStock = &b
	}
	for k, v := range m {
		switch k {
		case "sku", "image", "title", "category", "brand", "price", "in_stock":
			continue
		}
		if fromCSV && v == "" {
			continue
		}
		if p.Extra == nil {
			p.Extra = map[string]any{}
		}
		p.Extra[k] = plain(v)
	}
	return p, nil
}

// plain turns json.Number values into float64 (or int64 when exact), so
// Extra holds ordinary JSON values.
func plain(v any) any {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	case map[string]any:
		for k, e := range x {
			x[k] = plain(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = plain(e)
		}
		return x
	}
	return v
}
