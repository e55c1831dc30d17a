package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls a shield's admin API (used by `levee status`, `levee reload`).
type Client struct {
	// Base is http://host:port.
	Base  string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for addr (host:port or a URL).
func NewClient(addr, token string) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// Get fetches path and returns the raw body (for non-JSON exports).
func (c *Client) Get(path string) ([]byte, error) {
	var raw rawBody
	if err := c.do("GET", path, "", nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// rawBody receives an answer undecoded.
type rawBody []byte

// DoRaw sends body with the given content type and decodes a JSON answer.
func (c *Client) DoRaw(method, path, contentType string, body []byte, out any) error {
	return c.do(method, path, contentType, bytes.NewReader(body), out)
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (may be nil). Non-2xx answers become errors carrying the
// server's message.
func (c *Client) Do(method, path string, body, out any) error {
	var rd io.Reader
	ct := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd, ct = bytes.NewReader(b), "application/json"
	}
	return c.do(method, path, ct, rd, out)
}

func (c *Client) do(method, path, contentType string, rd io.Reader, out any) error {
	req, err := http.NewRequest(method, c.Base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is `levee serve` running? see --admin)", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("admin API: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	if rb, ok := out.(*rawBody); ok {
		*rb = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}
