package awstest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
)

// The compatibility proxy. Each fix names the moto behaviour it corrects;
// remove a fix when moto no longer needs it.
//
//   - ECS task containers: moto echoes a container's "cpu" and "memory" from
//     its task definition as JSON numbers; the ECS API (and the Go SDK, which
//     refuses anything else) has strings. The AWS SDK for Go always sends a
//     container's cpu (0 when unset), so every RunTask/DescribeTasks/StopTask
//     answer about a task from an SDK- or Terraform-registered definition
//     would fail to decode.

func (s *Server) startProxy() error {
	target, err := url.Parse(s.MotoEndpoint)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("awstest: proxy listen: %w", err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = fixResponse
	s.proxy = &http.Server{Handler: rp}
	s.Endpoint = "http://" + ln.Addr().String()
	go func() { _ = s.proxy.Serve(ln) }()
	return nil
}

const ecsTargetPrefix = "AmazonEC2ContainerServiceV20141113."

func fixResponse(resp *http.Response) error {
	if !strings.HasPrefix(resp.Request.Header.Get("X-Amz-Target"), ecsTargetPrefix) || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	body = FixECS(body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// FixECS rewrites numeric "cpu" and "memory" of every task container in an
// ECS JSON answer ({"task": …} or {"tasks": […]}) to strings. Anything it
// cannot parse is returned unchanged.
func FixECS(body []byte) []byte {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return body
	}
	changed := false
	fixTask := func(t any) {
		task, ok := t.(map[string]any)
		if !ok {
			return
		}
		cs, _ := task["containers"].([]any)
		for _, c := range cs {
			cm, ok := c.(map[string]any)
			if !ok {
				continue
			}
			for _, k := range []string{"cpu", "memory"} {
				if n, ok := cm[k].(json.Number); ok {
					cm[k] = n.String()
					changed = true
				}
			}
		}
	}
	if ts, ok := doc["tasks"].([]any); ok {
		for _, t := range ts {
			fixTask(t)
		}
	}
	fixTask(doc["task"])
	if !changed {
		return body
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return body
	}
	return out
}
