// Package http is the HTTP protocol engine of the ephemeral proxy
// (engine → guard → mask → record): a reverse proxy for one grant on an
// internal HTTP API. The agent speaks HTTP/1.1 to the proxy with the grant
// secret; the proxy checks every request against the grant's method and path
// rules (ephemeral/guard/httprule), forwards it with the grant's API token,
// masks the response as it streams back, and records both.
//
//	eng, err := http.New(http.Config{Grant: g, Guard: rules, Masker: m, Recorder: rec,
//		MaskJSONFields: []string{"$.users[*].email", "password"}})
//	go eng.Serve(ctx, conn)                           // session mode: ctx ends at the grant deadline
//	res, err := eng.Exec(ctx, "GET /v1/flags")        // exec mode: masked body, "HTTP 200" in res.Tag
//
// # Facing the agent
//
// Plain HTTP/1.1 (the proxy listens on loopback, or inside the grant's task).
// The agent authenticates every request with the grant secret, as
// "Authorization: Bearer <secret>" or in Proxy-Authorization (Bearer, or
// Basic with the secret as password, which is what curl sends for
// http://user:<secret>@proxy in HTTP_PROXY); the comparison is constant-time.
// A request without it gets 401 (407 through HTTP_PROXY) and the connection
// is closed. Both forms of request target work:
//
//   - origin form ("GET /v1/flags"): the proxy is the API's base URL;
//   - absolute form ("GET http://config-api:8080/v1/flags", what curl sends
//     through HTTP_PROXY): only http:// URLs naming the grant's target host
//     (or the target's name) and port; any other host, https via CONNECT,
//     and URLs with user information are refused.
//
// On a read grant (Guard.Access read) only GET, HEAD and OPTIONS pass,
// whatever the rules say. Refusals are 403 with
// {"error":"blocked by policy: <reason>"}; bodies
// above MaxBody are 413 and never reach the target; upstream failures are 502.
//
// # Facing the target
//
// Target.Address is the API's base URL ("http://host:port", "https://host",
// or "host:port" for http). The transport dials that address only, never a
// proxy from the environment, and never follows redirects. The request goes
// out with the agent's target unchanged (the guard refused everything two
// parsers could read differently) and its headers minus: hop-by-hop headers
// and those named in Connection, Authorization, Proxy-Authorization, Cookie,
// Forwarded and X-Forwarded-*, X-Real-IP, Expect, Accept-Encoding (the proxy
// asks for identity), and Range/If-Range when masking is on (a byte range
// could cut a secret in two). The credential goes into Config.Header
// (default "Authorization: Bearer <token>"). Protocol upgrades (WebSocket,
// h2c) and method-override headers are refused.
//
// # Masking the response as it streams
//
// The whole body is never buffered. By Content-Type:
//
//   - JSON (application/json, *+json, NDJSON): parsed token by token
//     (go-json-experiment's jsontext decoder, the basis of encoding/json/v2).
//     Values at a MaskJSONFields path are redacted whole in the masker's style
//     (objects and arrays become "********"); every other string, member name
//     and number goes through the detectors (escapes such as \u0040 are
//     decoded first, so they do not hide an address). Output is compact JSON.
//     A body that turns out not to be JSON aborts the connection. One string
//     or number is held whole while it is read. JSON served
//     as text/* is recognised by its first byte when field rules exist.
//   - text (text/*, XML, form data, YAML, JavaScript; also a missing
//     Content-Type): the detectors run with a carry-over window of 8 KiB, so a
//     secret split across reads is still found; a streaming body that pauses
//     for FlushDelay is sent without look-ahead (a secret split by such a
//     pause is masked only if each part is recognisable alone).
//   - anything else, including text in charsets other than UTF-8, ASCII and
//     Latin-1: passed unmasked only with AllowBinary, else refused (403).
//
// gzip bodies are decoded and sent uncompressed; other encodings are refused
// unless the body is binary and allowed. Header values are masked too,
// Set-Cookie is dropped (upstream sessions stay upstream), and
// Content-Length and digest headers are dropped from rewritten bodies. A 206
// partial body is refused when it would be masked.
//
// # Recording
//
// Each request is recorded in the grant's recording: a "query" event
// (Statement "GET /v1/flags?…" with detector matches masked), the guard's
// "verdict" (Tag: the deciding rule), the request body as a "rows" event
// (Columns ["request"], masked like a response, capped at MaxRecordedBody),
// the masked response body excerpt as "rows" (Columns ["response"], RowCount
// the full byte count; binary bodies by size only), and a "result" (Tag
// "HTTP 200", Reason naming dropped cookies); failures as "error". A request
// that cannot be recorded is refused with 503.
//
// # Metrics
//
// Verdicts counts every recorded verdict (the rules' and the proxy's own
// refusals) and MaskCounts the values masked, by detector name plus
// "json_field" for field-pattern redactions; the session proxy serves both on
// its metrics listener (ephemeral/session). Paths, field paths and values
// never become labels.
//
// # Deadline
//
// When ctx ends, the agent connection and every upstream request in flight
// are closed.
package http
