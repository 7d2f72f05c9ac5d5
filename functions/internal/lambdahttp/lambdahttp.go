// Package lambdahttp serves an http.Handler to Lambda events: API Gateway HTTP
// API payloads (format 2.0) and Lambda Function URL requests, which share that
// shape. It is the transport of functions/api: the same broker/httpapi handler
// as `jitgate broker serve`, one event per request.
//
//	lambda.Start(lambdahttp.Handler(h, lambdahttp.Options{}))
//
// The adapter keeps what the handler needs to authenticate and route: method,
// raw path and query, every header (Authorization included), cookies, the
// body (base64-decoded when the event says so), the caller's source IP as
// RemoteAddr, and the invocation's deadline as the request context. Responses
// go back with their status, headers (Set-Cookie as cookies) and body, as
// text when the content type is textual and base64 otherwise.
package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// Options adjusts the adapter.
type Options struct {
	// MaxBody refuses larger request bodies with 413 before the handler runs;
	// default 6 MiB (Lambda's synchronous payload limit).
	MaxBody int
}

// MaxResponse is Lambda's limit on a synchronous response payload; a larger
// response is replaced by a 502 the handler's caller can understand.
const MaxResponse = 6 << 20

// Handler returns a Lambda handler for API Gateway v2 and Function URL events.
func Handler(h http.Handler, opts Options) func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if opts.MaxBody <= 0 {
		opts.MaxBody = 6 << 20
	}
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		req, err := Request(ctx, ev, opts.MaxBody)
		if err != nil {
			var se *statusError
			if errors.As(err, &se) {
				return textResponse(se.status, se.msg), nil
			}
			return textResponse(http.StatusBadRequest, err.Error()), nil
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return Response(rec.Result().StatusCode, rec.Header(), rec.Body.Bytes()), nil
	}
}

type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// Request converts an event to an http.Request carrying ctx.
func Request(ctx context.Context, ev events.APIGatewayV2HTTPRequest, maxBody int) (*http.Request, error) {
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		return nil, errors.New("lambdahttp: event has no requestContext.http.method: not an API Gateway v2 or Function URL event")
	}
	path := ev.RawPath
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("lambdahttp: raw path %q does not start with /", path)
	}
	var body []byte
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("lambdahttp: body is marked base64 but does not decode: %v", err)
		}
		body = b
	} else {
		body = []byte(ev.Body)
	}
	if len(body) > maxBody {
		return nil, &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBody)}
	}
	u := &url.URL{Path: path, RawQuery: ev.RawQueryString}
	if p, err := url.PathUnescape(path); err == nil {
		u.Path, u.RawPath = p, path
	}
	req, err := http.NewRequestWithContext(ctx, method, u.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("lambdahttp: %w", err)
	}
	req.RequestURI = u.RequestURI()
	for k, v := range ev.Headers {
		// API Gateway joins repeated headers with commas; keep them joined.
		req.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	req.ContentLength = int64(len(body))
	req.Header.Del("Content-Length")
	req.Host = ev.RequestContext.DomainName
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	if ip := net.ParseIP(ev.RequestContext.HTTP.SourceIP); ip != nil {
		req.RemoteAddr = net.JoinHostPort(ip.String(), "0")
	}
	return req, nil
}

// Response builds the event response for a handler's status, headers and body.
func Response(status int, h http.Header, body []byte) events.APIGatewayV2HTTPResponse {
	if len(body) > MaxResponse {
		return textResponse(http.StatusBadGateway, fmt.Sprintf("response of %d bytes is above Lambda's %d-byte limit", len(body), MaxResponse))
	}
	out := events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: map[string]string{}}
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			out.Cookies = append(out.Cookies, vs...)
			continue
		}
		out.Headers[k] = strings.Join(vs, ",")
	}
	if textual(h.Get("Content-Type")) {
		out.Body = string(body)
	} else if len(body) > 0 {
		out.Body = base64.StdEncoding.EncodeToString(body)
		out.IsBase64Encoded = true
	}
	return out
}

func textual(ct string) bool {
	if ct == "" {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/xml" || mt == "application/x-ndjson" || mt == "application/javascript"
}

func textResponse(status int, msg string) events.APIGatewayV2HTTPResponse {
	return events.APIGatewayV2HTTPResponse{StatusCode: status,
		Headers: map[string]string{"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}, Body: msg + "\n"}
}
