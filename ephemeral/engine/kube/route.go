package kube

import (
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// Kind is what an agent's request asks for, once classified.
type Kind int

const (
	KindRefused Kind = iota
	KindDiscovery
	KindListPods
	KindGetPod
	KindExec
	KindAttach
	KindPortForward
)

func (k Kind) String() string {
	switch k {
	case KindDiscovery:
		return "discovery"
	case KindListPods:
		return "list-pods"
	case KindGetPod:
		return "get-pod"
	case KindExec:
		return "exec"
	case KindAttach:
		return "attach"
	case KindPortForward:
		return "port-forward"
	}
	return "refused"
}

// Route is an agent's request after classification. Upstream is the
// canonical request the proxy sends: rebuilt from the checked parts, never
// the agent's raw path or query, so what was checked is what is sent.
type Route struct {
	Kind      Kind
	Namespace string
	Pod       string
	Container string
	// Command is the exec argv (every command= value, in order).
	Command                    []string
	Stdin, Stdout, Stderr, TTY bool
	// Ports are the port= values of a port-forward (each in Kube.Ports);
	// empty when the agent names ports per stream only (SPDY).
	Ports    []int
	Upstream string // path?query
}

// maxURI bounds the request target the proxy parses.
const maxURI = 16 << 10

// query parameters allowed per route, each at most once (command excepted).
var (
	discoveryParams = map[string]bool{"timeout": true, "hash": true}
	listParams      = map[string]bool{"timeout": true, "limit": true, "continue": true, "resourceVersion": true,
		"resourceVersionMatch": true, "labelSelector": true, "timeoutSeconds": true}
	getParams    = map[string]bool{"timeout": true, "resourceVersion": true}
	execParams   = map[string]bool{"command": true, "container": true, "stdin": true, "stdout": true, "stderr": true, "tty": true, "timeout": true}
	attachParams = map[string]bool{"container": true, "stdin": true, "stdout": true, "stderr": true, "tty": true, "timeout": true}
	pfParams     = map[string]bool{"port": true, "timeout": true}
)

// AttachRefusal is the reason given when a grant does not allow attach.
const AttachRefusal = "attach is not allowed by this grant (when allowed, what is typed into an attached container is recorded, not filtered)"

// Classify decides one agent request against the grant's scope. It returns
// the route or a refusal reason (the Route's Kind is then KindRefused). It
// reads only method, the raw request target and the headers; it is a pure
// function, safe for concurrent use.
func Classify(g *spec.Guard, method, requestURI string, h http.Header) (Route, string) {
	no := func(reason string) (Route, string) { return Route{}, reason }
	if len(requestURI) > maxURI {
		return no("request target is too long")
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
			return no("impersonation headers are not allowed")
		}
	}
	if !strings.HasPrefix(requestURI, "/") {
		return no("only origin-form request targets are accepted")
	}
	rawPath, rawQuery, _ := strings.Cut(requestURI, "?")
	if strings.Contains(rawPath, "#") || strings.Contains(rawQuery, "#") {
		return no("fragments are not allowed")
	}
	// The path is taken as written: no percent-encoding, no empty, "." or
	// ".." segments, nothing a server could decode or clean into another
	// path than the one checked here.
	for i := 0; i < len(rawPath); i++ {
		c := rawPath[i]
		if c == '%' || c == '\\' || c == ';' || c <= ' ' || c >= 0x7f {
			return no("the path contains an encoded or reserved character")
		}
	}
	segs := strings.Split(rawPath[1:], "/")
	if rawPath == "/" {
		segs = nil
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return no("the path contains an empty, . or .. segment")
		}
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return no("the query cannot be parsed")
	}
	if strings.Contains(rawQuery, ";") {
		return no("the query cannot be parsed")
	}
	switch method {
	case http.MethodGet, http.MethodPost:
	default:
		return no("method " + method + " is not allowed: the grant is read-only apart from exec")
	}
	// Discovery.
	if method == http.MethodGet && discovery(segs) {
		if r := checkParams(q, discoveryParams); r != "" {
			return no(r)
		}
		return Route{Kind: KindDiscovery, Upstream: rebuild(rawPath, q)}, ""
	}
	sc := g.Kube
	switch {
	case len(segs) == 3 && segs[0] == "api" && segs[1] == "v1" && segs[2] == "pods":
		return no("listing pods across all namespaces is not allowed: the grant covers namespace " + sc.Namespace)
	case len(segs) >= 3 && segs[0] == "api" && segs[1] == "v1" && segs[2] == "watch":
		return no("watch is not allowed")
	case len(segs) < 5 || segs[0] != "api" || segs[1] != "v1" || segs[2] != "namespaces":
		return no("only pods in namespace " + sc.Namespace + " are covered by this grant")
	}
	ns := segs[3]
	if sc.Namespace == "" || ns != sc.Namespace {
		return no("namespace " + ns + " is not covered by this grant (namespace " + sc.Namespace + ")")
	}
	if segs[4] != "pods" {
		return no("resource " + segs[4] + " is not allowed: the grant covers pods only")
	}
	if !validName(ns) {
		return no("invalid namespace name")
	}
	base := "/api/v1/namespaces/" + ns + "/pods"
	switch len(segs) {
	case 5: // list
		if method != http.MethodGet {
			return no("creating pods is not allowed")
		}
		if r := checkParams(q, listParams); r != "" {
			return no(r)
		}
		if len(sc.Pods) > 0 {
			if _, ok := q["continue"]; ok {
				return no("paged pod lists are not allowed when the grant names pods")
			}
			if _, ok := q["limit"]; ok {
				q.Del("limit") // the proxy filters the whole list
			}
		}
		return Route{Kind: KindListPods, Namespace: ns, Upstream: rebuild(base, q)}, ""
	case 6, 7:
	default:
		return no("sub-resource path is not allowed")
	}
	pod := segs[5]
	if !validName(pod) {
		return no("invalid pod name")
	}
	if !globMatch(sc.Pods, pod) {
		return no("pod " + pod + " is not covered by this grant")
	}
	if len(segs) == 6 {
		if method != http.MethodGet {
			return no("writes to pods are not allowed")
		}
		if r := checkParams(q, getParams); r != "" {
			return no(r)
		}
		return Route{Kind: KindGetPod, Namespace: ns, Pod: pod, Upstream: rebuild(base+"/"+pod, q)}, ""
	}
	kind, params := KindExec, execParams
	switch sub := segs[6]; sub {
	case "exec":
		if !sc.Exec {
			return no("exec is not allowed by this grant")
		}
	case "attach":
		if !sc.Attach {
			return no(AttachRefusal)
		}
		kind, params = KindAttach, attachParams
	case "portforward":
		return portForward(sc, q, ns, pod)
	default:
		return no("pods/" + sub + " is not allowed")
	}
	if r := checkParams(q, params); r != "" {
		return no(r)
	}
	rt := Route{Kind: kind, Namespace: ns, Pod: pod, Command: q["command"]}
	if c, ok := q["container"]; ok {
		rt.Container = c[0]
		if !validName(rt.Container) {
			return no("invalid container name")
		}
	}
	if rt.Container == "" && len(sc.Containers) > 0 {
		return no("the container must be named: the grant covers containers " + strings.Join(sc.Containers, ", "))
	}
	if rt.Container != "" && !globMatch(sc.Containers, rt.Container) {
		return no("container " + rt.Container + " is not covered by this grant")
	}
	for name, dst := range map[string]*bool{"stdin": &rt.Stdin, "stdout": &rt.Stdout, "stderr": &rt.Stderr, "tty": &rt.TTY} {
		v, ok := q[name]
		if !ok {
			continue
		}
		switch v[0] {
		case "true", "1":
			*dst = true
		case "false", "0", "":
		default:
			return no("invalid value for " + name)
		}
	}
	if len(rt.Command) == 0 && kind == KindExec {
		return no("exec without a command is not allowed")
	}
	if !rt.Stdout && !rt.Stderr && !rt.Stdin {
		return no(sub(kind) + " needs at least one of stdin, stdout, stderr")
	}
	up := url.Values{}
	if kind == KindExec {
		up["command"] = rt.Command
	}
	if rt.Container != "" {
		up.Set("container", rt.Container)
	}
	for _, kv := range []struct {
		k string
		v bool
	}{{"stdin", rt.Stdin}, {"stdout", rt.Stdout}, {"stderr", rt.Stderr}, {"tty", rt.TTY}} {
		if kv.v {
			up.Set(kv.k, "true")
		}
	}
	rt.Upstream = base + "/" + pod + "/" + sub(kind) + "?" + up.Encode()
	return rt, ""
}

// sub is the pod sub-resource of a stream kind.
func sub(k Kind) string {
	if k == KindAttach {
		return "attach"
	}
	return "exec"
}

// portForward classifies pods/portforward: only with Kube.PortForward and
// Kube.Ports, every port= value (comma-separated lists included) in Ports and
// named once. Streams are checked again, one by one, when they open.
func portForward(sc spec.KubeScope, q url.Values, ns, pod string) (Route, string) {
	no := func(reason string) (Route, string) { return Route{}, reason }
	if !sc.PortForward {
		return no("port-forward is not allowed by this grant")
	}
	if len(sc.Ports) == 0 {
		return no("port-forward is allowed but the grant names no ports")
	}
	for k := range q {
		if !pfParams[k] {
			return no("query parameter " + strconvQuote(k) + " is not allowed here")
		}
	}
	if t := q["timeout"]; len(t) > 1 {
		return no("query parameter timeout is repeated")
	}
	rt := Route{Kind: KindPortForward, Namespace: ns, Pod: pod}
	seen := map[int]bool{}
	for _, v := range q["port"] {
		for _, s := range strings.Split(v, ",") {
			p, ok := parsePort(s)
			if !ok {
				return no("port " + strconvQuote(s) + " is not a port number")
			}
			if seen[p] {
				return no("port " + strconv.Itoa(p) + " is named twice")
			}
			seen[p] = true
			if !slices.Contains(sc.Ports, p) {
				return no(PortRefusal(sc.Ports, p))
			}
			rt.Ports = append(rt.Ports, p)
		}
	}
	// Upstream the ports travel in each stream's headers (SPDY); the query
	// is not passed on.
	rt.Upstream = "/api/v1/namespaces/" + ns + "/pods/" + pod + "/portforward"
	return rt, ""
}

// PortRefusal is the reason a port outside the grant's ports is refused.
func PortRefusal(ports []int, p int) string {
	s := make([]string, len(ports))
	for i, v := range ports {
		s[i] = strconv.Itoa(v)
	}
	return "port " + strconv.Itoa(p) + " is not covered by this grant (ports " + strings.Join(s, ", ") + ")"
}

// parsePort accepts 1-65535 written in plain decimal.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n >= 1 && n <= 65535
}

// discovery reports whether segs is a discovery path kubectl reads.
func discovery(segs []string) bool {
	switch {
	case len(segs) == 1 && (segs[0] == "api" || segs[0] == "apis" || segs[0] == "version"):
		return true
	case len(segs) == 2 && segs[0] == "api" && segs[1] == "v1":
		return true
	case len(segs) == 3 && segs[0] == "apis" && validName(segs[1]) && validName(segs[2]):
		return true // /apis/<group>/<version>: a resource list, no objects
	case len(segs) == 2 && segs[0] == "apis" && validName(segs[1]):
		return true
	case len(segs) == 2 && segs[0] == "openapi" && (segs[1] == "v2" || segs[1] == "v3"):
		return true
	case len(segs) >= 3 && segs[0] == "openapi" && segs[1] == "v3":
		for _, s := range segs[2:] {
			if !validName(s) {
				return false
			}
		}
		return true
	}
	return false
}

// checkParams refuses unknown and repeated query parameters (command= is argv
// and may repeat), and watch in any form.
func checkParams(q url.Values, allowed map[string]bool) string {
	for k, v := range q {
		switch {
		case k == "watch" || k == "allowWatchBookmarks" || k == "sendInitialEvents":
			return "watch is not allowed"
		case k == "dryRun":
			return "dryRun is not allowed"
		case !allowed[k]:
			return "query parameter " + strconvQuote(k) + " is not allowed here"
		case k != "command" && len(v) > 1:
			return "query parameter " + k + " is repeated"
		}
	}
	return ""
}

func strconvQuote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < ' ' || r == '"' || r >= 0x7f {
			return '?'
		}
		return r
	}, s) + `"`
}

// rebuild is the upstream request target: the checked path and the query
// re-encoded from its parsed values.
func rebuild(p string, q url.Values) string {
	if len(q) == 0 {
		return p
	}
	return p + "?" + q.Encode()
}

// validName accepts Kubernetes object names (DNS subdomains, lower case) and
// API group/version names.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return s != "." && s != ".."
}

// globMatch reports whether name matches one of globs; no globs match all.
func globMatch(globs []string, name string) bool {
	if len(globs) == 0 {
		return true
	}
	for _, g := range globs {
		if ok, err := path.Match(g, name); err == nil && ok {
			return true
		}
	}
	return false
}
