package stack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/lookalike-dev/lookalike/shared/contract/gatewayv1"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Product is one line of the demo catalog.
type Product struct {
	SKU      string  `json:"sku"`
	Title    string  `json:"title"`
	Category string  `json:"category"`
	Price    float64 `json:"price"`
	Image    string  `json:"image"`
}

// Query is one line of queries.jsonl.
type Query struct {
	Image     string `json:"image"`
	ExpectSKU string `json:"expect_sku"`
	What      string `json:"what"`
}

// ReadJSONL reads a JSONL file into a slice of T.
func ReadJSONL[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, sc.Err()
}

// Multipart builds a multipart body from fields and files (name -> bytes).
func Multipart(fields map[string]string, files map[string][]byte) (*bytes.Buffer, string) {
	b, ct := gatewayv1.Multipart(fields, files)
	return bytes.NewBuffer(b), ct
}

// ErrorBody is the error envelope.
type ErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

// Client is a small gateway client for tests.
type Client struct {
	Base     string
	AdminKey string
	HTTP     *http.Client
}

// NewClient returns a client with a 60 s timeout.
func NewClient(base, key string) *Client {
	return &Client{Base: base, AdminKey: key, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Do sends a request and returns status, body.
func (c *Client) Do(method, path, contentType string, body io.Reader, admin bool) (int, []byte, http.Header, error) {
	req, err := http.NewRequest(method, c.Base+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+c.AdminKey)
	}
	return c.send(req)
}

// send sends req and returns status, body.
func (c *Client) send(req *http.Request) (int, []byte, http.Header, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// IndexProduct posts one catalog product through the admin API.
func (c *Client) IndexProduct(catalogDir string, p Product) error {
	img, err := os.ReadFile(filepath.Join(catalogDir, p.Image))
	if err != nil {
		return err
	}
	meta, _ := json.Marshal(map[string]any{"title": p.Title, "category": p.Category, "price": p.Price, "image": p.Image})
	body, ct := Multipart(map[string]string{"sku": p.SKU, "metadata": string(meta)}, map[string][]byte{"image": img})
	st, b, _, err := c.Do(http.MethodPost, "/v1/products", ct, body, true)
	if err != nil {
		return err
	}
	if st/100 != 2 {
		return fmt.Errorf("indexing %s: %d %s", p.SKU, st, b)
	}
	return nil
}

// SearchImage uploads an image to /v1/search.
func (c *Client) SearchImage(img []byte, query string) (gatewayv1.SearchResponse, error) {
	body, ct := Multipart(nil, map[string][]byte{"image": img})
	return searchResult(c.Do(http.MethodPost, "/v1/search"+query, ct, body, false))
}

func searchResult(st int, b []byte, _ http.Header, err error) (gatewayv1.SearchResponse, error) {
	if err != nil {
		return gatewayv1.SearchResponse{}, err
	}
	if st != http.StatusOK {
		return gatewayv1.SearchResponse{}, fmt.Errorf("search: %d %s", st, b)
	}
	var r gatewayv1.SearchResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("search response: %w: %s", err, b)
	}
	return r, nil
}

// IndexAll indexes products through the gateway, workers at a time.
func (c *Client) IndexAll(catalogDir string, products []Product, workers int) error {
	sem := make(chan struct{}, workers)
	errc := make(chan error, len(products))
	for _, p := range products {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errc <- c.IndexProduct(catalogDir, p)
		}()
	}
	var first error
	for range products {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Metric reads one unlabelled sample (e.g. go_goroutines) from /metrics.
func (c *Client) Metric(base, name string) (float64, error) {
	resp, err := c.HTTP.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v float64
		if n, _ := fmt.Sscanf(sc.Text(), name+" %g", &v); n == 1 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("metric %s not found at %s", name, base)
}

// LoadCatalog reads a JSONL catalog and the bytes of each product's photo
// (paths relative to the catalog's folder).
func LoadCatalog(catalogJL string) ([]Product, [][]byte, error) {
	products, err := ReadJSONL[Product](catalogJL)
	if err != nil {
		return nil, nil, err
	}
	imgs := make([][]byte, len(products))
	for i, p := range products {
		if imgs[i], err = os.ReadFile(filepath.Join(filepath.Dir(catalogJL), p.Image)); err != nil {
			return nil, nil, err
		}
	}
	return products, imgs, nil
}
