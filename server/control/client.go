package control

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls the control API (Handler) as one department, authenticated
// by its bearer token. `jutong apply`, `approve` and the other control
// commands are thin wrappers of it.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client of the control API at baseURL (the bus's API,
// http://127.0.0.1:8080 for jutong dev); hc nil means http.DefaultClient.
func NewClient(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, hc: hc}
}

// APIError is a refusal of the control API: the HTTP status and what it
// said. errors.Is matches ErrForbidden (403), ErrNotFound (404) and ErrState
// (409); errors.As with *RequestError (422) gives the field.
type APIError struct {
	Status  int
	Message string
	Field   string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// Unwrap maps the status to the service's errors.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusForbidden:
		return ErrForbidden
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrState
	case http.StatusUnprocessableEntity:
		return &RequestError{Field: e.Field, Reason: e.Message}
	}
	return nil
}

// Apply applies for an item (the demand list).
func (c *Client) Apply(ctx context.Context, r Request) (*Application, error) {
	var a Application
	return &a, c.call(ctx, http.MethodPost, "/v1/applications", r, &a)
}

// Approve, Refuse and Revoke decide an application (Verdict.Approve is set
// by the call).
func (c *Client) Approve(ctx context.Context, id string, v Verdict) (*Application, error) {
	return c.decide(ctx, id, "approve", v)
}

// Refuse refuses an application, with v.Reason.
func (c *Client) Refuse(ctx context.Context, id string, v Verdict) (*Application, error) {
	return c.decide(ctx, id, "refuse", v)
}

// Revoke revokes a grant, with v.Reason.
func (c *Client) Revoke(ctx context.Context, id string, v Verdict) (*Application, error) {
	return c.decide(ctx, id, "revoke", v)
}

func (c *Client) decide(ctx context.Context, id, action string, v Verdict) (*Application, error) {
	var a Application
	return &a, c.call(ctx, http.MethodPost, "/v1/applications/"+url.PathEscape(id)+"/"+action, v, &a)
}

// Application returns one application the department may see.
func (c *Client) Application(ctx context.Context, id string) (*Application, error) {
	var a Application
	return &a, c.call(ctx, http.MethodGet, "/v1/applications/"+url.PathEscape(id), nil, &a)
}

// Applications lists the applications the department may see, filtered.
func (c *Client) Applications(ctx context.Context, f Filter) ([]*Application, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": string(f.State), "item": f.Item, "department": f.Department} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Overdue {
		q.Set("overdue", "1")
	}
	path := "/v1/applications"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []*Application
	return out, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Grants lists the active grants the department may see.
func (c *Client) Grants(ctx context.Context) ([]Grant, error) {
	var out []Grant
	return out, c.call(ctx, http.MethodGet, "/v1/grants", nil, &out)
}

// Responsibilities returns the department's responsibility list (all
// departments' for the data authority).
func (c *Client) Responsibilities(ctx context.Context) ([]Duty, error) {
	var out []Duty
	return out, c.call(ctx, http.MethodGet, "/v1/responsibilities", nil, &out)
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control API: %w", err)
	}
	if resp.StatusCode >= 300 {
		var e apiError
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(raw))
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error, Field: e.Field}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("control API: %s %s: %w", method, path, err)
	}
	return nil
}
