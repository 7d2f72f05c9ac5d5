package stack

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitHealthy waits up to 60s for url to answer 200. It fails the test at
// once when exited (a Process's Exited; nil: not watched) closes first.
func WaitHealthy(t testing.TB, url string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("the process exited before %s answered", url)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not become healthy", url)
}

// Call sends body (JSON, if not nil) to base+path with tok as the bearer
// token (none if empty) and returns the status and the raw answer. It is
// safe to call from several goroutines; errors are returned, not fatal.
func Call(base, tok, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

// API is Call with the answer decoded as a JSON object; an answer that is
// not one is an error (with the status still set).
func API(base, tok, method, path string, body any) (int, map[string]any, error) {
	code, raw, err := Call(base, tok, method, path, body)
	if err != nil {
		return code, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return code, nil, fmt.Errorf("%s %s: %d, body not JSON: %s", method, path, code, raw)
	}
	return code, out, nil
}
