package http

import (
	"mime"
	"net/http"
	"strings"
)

// bodyKind is how the engine treats a response body.
type bodyKind int

const (
	bodyNone   bodyKind = iota // HEAD, 1xx, 204, 304
	bodyJSON                   // token-wise JSON masking
	bodyText                   // detectors over the stream
	bodyBinary                 // passed only with AllowBinary
)

func (k bodyKind) String() string {
	switch k {
	case bodyNone:
		return "none"
	case bodyJSON:
		return "json"
	case bodyText:
		return "text"
	case bodyBinary:
		return "binary"
	}
	return "unknown"
}

// classify decides from the Content-Type how a body is masked. A missing
// Content-Type is scanned as text (over-masking is safe); text in a charset
// other than UTF-8, ASCII or Latin-1 is binary to the detectors.
func classify(method string, status int, h http.Header) bodyKind {
	if method == http.MethodHead || status < 200 || status == http.StatusNoContent || status == http.StatusNotModified {
		return bodyNone
	}
	ct := h.Get("Content-Type")
	if ct == "" {
		return bodyText
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return bodyBinary
	}
	if cs, ok := params["charset"]; ok {
		switch strings.ToLower(cs) {
		case "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1":
		default:
			return bodyBinary
		}
	}
	switch {
	case mt == "application/json", mt == "text/json", strings.HasSuffix(mt, "+json"),
		mt == "application/x-ndjson", mt == "application/jsonl", mt == "application/x-jsonlines":
		return bodyJSON
	case strings.HasPrefix(mt, "text/"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/javascript", mt == "application/x-www-form-urlencoded",
		mt == "application/yaml", mt == "application/x-yaml", mt == "application/toml",
		mt == "application/graphql", mt == "application/sql", mt == "application/csv":
		return bodyText
	}
	return bodyBinary
}

// hopHeaders are removed in both directions (RFC 9110 7.6.1), with every
// header the Connection header names.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, n := range hopHeaders {
		h.Del(n)
	}
}

// agentOnly are request headers the agent may not send upstream: its own
// credentials and cookies (the proxy's injected credential is the only one),
// and forwarding headers it could spoof.
var agentOnly = []string{
	"Authorization", "Cookie", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host",
	"X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-Ip", "Accept-Encoding",
}

// wantsUpgrade reports a protocol switch (WebSocket, h2c), which the proxy
// cannot guard.
func wantsUpgrade(h http.Header) bool {
	if len(h["Upgrade"]) > 0 || len(h["Http2-Settings"]) > 0 {
		return true
	}
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "upgrade") {
				return true
			}
		}
	}
	return false
}
