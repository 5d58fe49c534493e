// Package replay sends prebuilt HTTP/1.1 requests over a kept-alive
// connection and reads each answer with no more work than framing it takes,
// as lean load tools (wrk) do. The load generator of bench-e2e shares the
// two cores with the services it measures, while a real client on another
// machine would cost them nothing: net/http's client (a request object,
// two goroutines a connection and a hand-off between them per request) and
// decoding the JSON answer cost it ~0.7 ms of CPU a query.
//
// A request's head and body are written once into a file in memory
// (shared/bodyfile) and sent with sendfile(2).
package replay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/lookalike-dev/lookalike/shared/bodyfile"
)

// Request is a whole HTTP/1.1 request, head and body, in a file in memory.
type Request struct{ f bodyfile.File }

// NewPost builds a POST of body to target (path and query) on host.
func NewPost(host, target, contentType string, body []byte) (Request, error) {
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		target, host, contentType, len(body))
	f, err := bodyfile.Write(append([]byte(head), body...))
	if err != nil {
		return Request{}, err
	}
	return Request{f: f}, nil
}

// Remove deletes the request's file.
func (r Request) Remove() error { return r.f.Remove() }

// Client is one kept-alive connection to addr (host:port), redialled when
// the server closes it. It is not safe for concurrent use.
type Client struct {
	addr    string
	timeout time.Duration
	conn    *net.TCPConn
	br      *bufio.Reader
	files   map[string]*os.File
	body    []byte
}

// NewClient returns a client of addr; each request must be answered within
// timeout.
func NewClient(addr string, timeout time.Duration) *Client {
	return &Client{addr: addr, timeout: timeout, files: map[string]*os.File{}}
}

// Do sends r and returns the answer's status and body. The body is valid
// until the next call.
func (c *Client) Do(r Request) (int, []byte, error) {
	f, err := c.file(r)
	if err != nil {
		return 0, nil, err
	}
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return 0, nil, fmt.Errorf("connecting to %s: %w", c.addr, err)
		}
		c.conn = conn.(*net.TCPConn)
		c.br = bufio.NewReaderSize(c.conn, 64<<10)
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, nil, c.fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, nil, c.fail(err)
	}
	// An *io.LimitedReader over an *os.File goes out with sendfile(2).
	if _, err := c.conn.ReadFrom(&io.LimitedReader{R: f, N: r.f.Size}); err != nil {
		return 0, nil, c.fail(fmt.Errorf("sending: %w", err))
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, c.fail(fmt.Errorf("reading the answer: %w", err))
	}
	buf := bytes.NewBuffer(c.body[:0]) // the last answer's memory, grown as needed
	_, err = buf.ReadFrom(resp.Body)
	c.body = buf.Bytes()
	if err != nil {
		return 0, nil, c.fail(fmt.Errorf("reading the answer: %w", err))
	}
	resp.Body.Close()
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, c.body, nil
}

func (c *Client) file(r Request) (*os.File, error) {
	if f, ok := c.files[r.f.Path]; ok {
		return f, nil
	}
	f, err := os.Open(r.f.Path)
	if err != nil {
		return nil, fmt.Errorf("opening a request file: %w", err)
	}
	c.files[r.f.Path] = f
	return f, nil
}

// fail drops the connection (its state is unknown) and returns err.
func (c *Client) fail(err error) error {
	c.close()
	return err
}

func (c *Client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// Close closes the connection and the request files.
func (c *Client) Close() {
	c.close()
	for p, f := range c.files {
		f.Close()
		delete(c.files, p)
	}
}
