package kube_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

// FuzzClassify: whatever the request target, an allowed route stays in the
// grant's namespace and pods, its upstream target is canonical (no
// encodings, no dot segments) and classifies to the same route again.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"/api", "/apis/apps/v1", "/version", "/openapi/v3/api/v1",
		"/api/v1/namespaces/shop/pods", "/api/v1/namespaces/shop/pods/web-1?resourceVersion=0",
		"/api/v1/namespaces/shop/pods/web-1/exec?command=ls&command=-l&container=app&stdout=true",
		"/api/v1/namespaces/shop/pods/web-1/exec?command=sh&command=-c&command=id&stdin=1&tty=1",
		"/api/v1/namespaces/shop/pods/web-1/../../other/pods", "/api/v1/namespaces/shop%2fpods",
		"/api/v1/pods", "/api/v1/namespaces/shop/pods/web-1/attach", "/api/v1/namespaces/shop/pods?watch=1",
		"/api/v1/namespaces/shop/pods/web-1/attach?container=app&stdin=true&stdout=true",
		"/api/v1/namespaces/shop/pods/web-1/portforward", "/api/v1/namespaces/shop/pods/web-1/portforward?port=8080",
		"/api/v1/namespaces/shop/pods/web-1/portforward?port=8080,9090&port=22", "/api/v1/namespaces/shop/pods/web-1/portforward?ports=8080",
	} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	g := &spec.Guard{Access: spec.Read, Kube: spec.KubeScope{Namespace: "shop", Pods: []string{"web-*"}, Containers: []string{"app"}, Exec: true}}
	gAll := &spec.Guard{Access: spec.Read, Kube: spec.KubeScope{Namespace: "shop", Exec: true}}
	gStreams := &spec.Guard{Access: spec.Read, Kube: spec.KubeScope{Namespace: "shop", Pods: []string{"web-*"}, Containers: []string{"app"},
		Attach: true, PortForward: true, Ports: []int{8080, 9090}}}
	f.Fuzz(func(t *testing.T, method, target string) {
		for _, g := range []*spec.Guard{g, gAll, gStreams} {
			rt, reason := kube.Classify(g, method, target, http.Header{})
			if reason != "" {
				if rt.Kind != kube.KindRefused || rt.Upstream != "" {
					t.Fatalf("refused (%s) but route %+v", reason, rt)
				}
				continue
			}
			if rt.Kind == kube.KindRefused || !strings.HasPrefix(rt.Upstream, "/") {
				t.Fatalf("allowed %q but route %+v", target, rt)
			}
			p, _, _ := strings.Cut(rt.Upstream, "?")
			if strings.Contains(p, "%") || strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
				strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") || strings.Contains(rt.Upstream, "#") {
				t.Fatalf("non-canonical upstream %q from %q", rt.Upstream, target)
			}
			if rt.Kind != kube.KindDiscovery {
				if rt.Namespace != "shop" || !strings.HasPrefix(rt.Upstream, "/api/v1/namespaces/shop/pods") {
					t.Fatalf("route outside the namespace: %q → %+v", target, rt)
				}
			} else if strings.Contains(rt.Upstream, "/namespaces/") || strings.Contains(rt.Upstream, "/pods") {
				t.Fatalf("discovery route names objects: %q → %+v", target, rt)
			}
			if rt.Kind == kube.KindExec && (len(rt.Command) == 0 || len(g.Kube.Containers) > 0 && rt.Container != "app") {
				t.Fatalf("exec route %+v from %q", rt, target)
			}
			if rt.Kind == kube.KindAttach && (!g.Kube.Attach || len(rt.Command) != 0 || rt.Container != "app") {
				t.Fatalf("attach route %+v from %q under %+v", rt, target, g.Kube)
			}
			if rt.Kind == kube.KindPortForward {
				seen := map[int]bool{}
				for _, p := range rt.Ports {
					if seen[p] || !slices.Contains(g.Kube.Ports, p) {
						t.Fatalf("port-forward route %+v from %q: port %d repeated or outside %v", rt, target, p, g.Kube.Ports)
					}
					seen[p] = true
				}
				if !g.Kube.PortForward || strings.Contains(rt.Upstream, "?") {
					t.Fatalf("port-forward route %+v from %q under %+v", rt, target, g.Kube)
				}
			}
			if rt.Kind == kube.KindExec && !g.Kube.Exec {
				t.Fatalf("exec route without Exec: %+v", rt)
			}
			if rt.Pod != "" && len(g.Kube.Pods) > 0 && !strings.HasPrefix(rt.Pod, "web-") {
				t.Fatalf("pod outside the globs: %+v", rt)
			}
			again, reason := kube.Classify(g, method, rt.Upstream, http.Header{})
			if reason != "" || again.Upstream != rt.Upstream || again.Kind != rt.Kind || strings.Join(again.Command, "\x00") != strings.Join(rt.Command, "\x00") {
				t.Fatalf("upstream %q does not classify to itself: %+v (%s)", rt.Upstream, again, reason)
			}
		}
	})
}
