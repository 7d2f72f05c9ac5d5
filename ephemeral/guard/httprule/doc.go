// Package httprule decides whether an HTTP request (method and path) may pass
// through the ephemeral proxy to an internal API. It is the guard step of the
// HTTP engine (engine → GUARD → mask → record): ephemeral/engine/http calls
// Check on every request before anything reaches the target, and the broker
// can call the same code when it decides an exec grant ("GET /v1/flags"), so
// what was approved is exactly what is enforced.
//
// # Rules
//
// A rule names methods, a path pattern and an effect (allow or deny):
//
//	{Methods: ["GET", "HEAD"], Path: "/v1/flags",         Effect: "allow"}
//	{Methods: ["GET"],         Path: "/v1/users/{id}",    Effect: "allow"} // one segment, named
//	{Methods: ["PUT"],         Path: "/v1/items/*",       Effect: "allow"} // one segment
//	{Methods: ["*"],           Path: "/v1/files/**",      Effect: "allow"} // zero or more segments
//	{Methods: ["*"],           Path: "/v1/admin/**",      Effect: "deny"}
//
// Deny wins; a request no allow rule matches is refused. "*" and "{name}"
// match exactly one non-empty segment; "**" may only end a pattern and matches
// the rest of the path, including nothing ("/v1/files/**" matches "/v1/files").
// Patterns are literal otherwise: no partial globs ("ab*"), no regular
// expressions. A trailing slash on a request path is ignored for matching
// ("/v1/admin/" is judged as "/v1/admin"). Deny patterns match ASCII
// case-insensitively, so "/v1/ADMIN" cannot slip past a deny rule on an
// upstream that folds case; allow patterns match exactly.
//
// Methods are upper-case tokens; "*" is any method. TRACE and CONNECT are
// always refused whatever the rules say: TRACE echoes the request, injected
// credential included, back to the agent; CONNECT would open a tunnel the
// proxy cannot see into. Config.Access caps the methods: a read grant passes
// only GET, HEAD and OPTIONS even where a rule allows more.
//
// # Normalisation: refuse what two parsers could read differently
//
// The proxy forwards the request target exactly as the agent sent it, so the
// target must mean the same thing to the guard and to every upstream framework.
// Whatever could be read in two ways is refused, with the reason:
//
//   - a path that does not start with "/" (asterisk-form "*" included), or is
//     longer than MaxPathBytes;
//   - raw bytes outside printable ASCII (controls, NUL, space, DEL, non-ASCII),
//     a backslash, or a fragment ("#");
//   - "." and ".." segments, segments made only of dots, and empty segments
//     ("//");
//   - path parameters (";", also encoded as %3B);
//   - percent-escapes that are malformed ("%2", "%zz", IIS's "%u002f"), that
//     decode to "/", "\", ".", "%" (double encoding), ";", NUL or another
//     control byte, or whose decoded bytes are not valid UTF-8 (overlong forms
//     such as %C0%AF included);
//   - a query that contains raw non-printable bytes, malformed escapes or an
//     encoded NUL, or a "_method" parameter (Rails, Laravel and others read it
//     as a method override);
//   - a method that is not an upper-case token (mixed case "Get" is refused:
//     some servers fold it, the guard would not).
//
// Method-override headers (X-HTTP-Method-Override, X-HTTP-Method,
// X-Method-Override) are refused by CheckHeader, which the engine calls on
// every request.
package httprule
