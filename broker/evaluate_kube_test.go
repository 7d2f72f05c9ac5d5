package broker_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker"
	"github.com/jitgate/jitgate/broker/policy"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const kubePolicy = `version: 1
issuers:
  - {name: okta, issuer: https://example.okta.com/oauth2/default, audience: api://jitgate}
targets:
  - name: shop-k8s
    kind: kube
    address: 127.0.0.1:6443
    namespace: shop
    pods: ["web-*"]
    containers: [app]
    exec: true
    commands: {deny: [curl]}
    credentials: {source: local, token: env:K8S_TOKEN}
  - name: noexec-k8s
    kind: kube
    address: 127.0.0.1:6443
    namespace: shop
    credentials: {source: local, token: env:K8S_TOKEN}
rules:
  - {name: agents, when: '"ai-agents" in identity.groups', targets: [shop-k8s, noexec-k8s], access: read}
`

func kubeOp(ns, pod, container string, argv ...string) string {
	return broker.KubeOperation{Namespace: ns, Pod: pod, Container: container, Command: argv}.String()
}

// TestEvaluateKubeExec: the broker judges a kube exec operation as the proxy
// will: the grant's namespace, pod and container globs, the exec switch and the
// command through the shell guard (tar denied without copy_files). The
// disguised rm -rf forms are refused with the guard's reason.
func TestEvaluateKubeExec(t *testing.T) {
	t.Parallel()
	p := parsePolicy(t, "k.yaml", kubePolicy)
	for _, tc := range []struct {
		name, target, op string
		allow            bool
		reason           string // a substring of the joined reasons
	}{
		{"allowed", "shop-k8s", kubeOp("shop", "web-1", "app", "ls", "-l", "/srv"), true, ""},
		{"argv with spaces stays one word", "shop-k8s", kubeOp("shop", "web-1", "app", "cat", "/srv/my file; rm -rf /"), true, ""},
		{"rm", "shop-k8s", kubeOp("shop", "web-1", "app", "rm", "-rf", "/srv"), false, "command refused: rm is denied by default"},
		{"sh -c rm", "shop-k8s", kubeOp("shop", "web-1", "app", "sh", "-c", "rm -rf /srv"), false, "command refused: rm is denied by default"},
		{"bash -c chain", "shop-k8s", kubeOp("shop", "web-1", "app", "bash", "-c", "ls && rm -rf x"), false, "command refused: rm is denied by default"},
		{"command substitution", "shop-k8s", kubeOp("shop", "web-1", "app", "sh", "-c", "echo $(rm -rf x)"), false, "command refused: rm is denied by default"},
		{"env rm", "shop-k8s", kubeOp("shop", "web-1", "app", "env", "rm", "-rf", "x"), false, "command refused: rm is denied by default"},
		{"pipe into sh", "shop-k8s", kubeOp("shop", "web-1", "app", "sh", "-c", "ls | sh"), false, "command refused:"},
		{"deny list", "shop-k8s", kubeOp("shop", "web-1", "app", "curl", "http://x"), false, "command refused: curl is on the grant's deny list"},
		{"kubectl cp without copy_files", "shop-k8s", kubeOp("shop", "web-1", "app", "tar", "cf", "-", "/srv"), false, "command refused: tar is on the grant's deny list"},
		{"tar inside sh -c", "shop-k8s", kubeOp("shop", "web-1", "app", "sh", "-c", "cd /srv && tar cf - ."), false, "command refused: tar is on the grant's deny list"},
		{"other namespace", "shop-k8s", kubeOp("kube-system", "web-1", "app", "ls"), false, "namespace kube-system is not covered by target shop-k8s (namespace shop)"},
		{"pod outside globs", "shop-k8s", kubeOp("shop", "db-0", "app", "ls"), false, `pod "db-0" is not covered by the target's pods [web-*]`},
		{"container outside globs", "shop-k8s", kubeOp("shop", "web-1", "debug", "ls"), false, `container "debug" is not covered by the target's containers [app]`},
		{"container not named", "shop-k8s", kubeOp("shop", "web-1", "", "ls"), false, "name the container"},
		{"exec switched off", "noexec-k8s", kubeOp("shop", "web-1", "", "ls"), false, "exec is not allowed on target noexec-k8s (exec: false)"},
		{"NUL in an argument", "shop-k8s", kubeOp("shop", "web-1", "app", "cat", "a\x00b"), false, "cannot be quoted for a shell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev, err := evaluateExec(p, tc.target, tc.op)
			if err != nil {
				t.Fatal(err)
			}
			if got := ev.Effect == policy.EffectAllow; got != tc.allow {
				t.Fatalf("effect %s, want allow=%v; reasons %v", ev.Effect, tc.allow, ev.Reasons)
			}
			if ev.Access != spec.Read {
				t.Errorf("access %s, want read", ev.Access)
			}
			if !strings.Contains(strings.Join(ev.Reasons, "; "), tc.reason) {
				t.Errorf("reasons %v, want one containing %q", ev.Reasons, tc.reason)
			}
			if len(ev.Statements) == 0 && !strings.Contains(tc.name, "NUL") {
				t.Error("no statements for the approver")
			}
		})
	}
}

// TestEvaluateKubeExecBadOperation: what cannot be read as a kube operation is
// a bad request (HTTP 400), never a grant.
func TestEvaluateKubeExecBadOperation(t *testing.T) {
	t.Parallel()
	p := parsePolicy(t, "k.yaml", kubePolicy)
	for _, op := range []string{
		"ls -l",
		`{"namespace":"shop","pod":"web-1","command":"ls"}`,
		`{"namespace":"shop","pod":"web-1","command":[]}`,
		`{"namespace":"shop","pod":"web-1","command":[""]}`,
		`{"pod":"web-1","command":["ls"]}`,
		`{"namespace":"shop","command":["ls"]}`,
		`{"namespace":"shop","pod":"web-1","command":["ls"],"tty":true}`,
		`{"namespace":"shop","pod":"web-1","command":["ls"]} {"x":1}`,
		"",
	} {
		wantBadRequest(t, p, broker.RequestInput{Target: "shop-k8s", Mode: spec.Exec, Operation: op})
	}
}

func TestKubeOperationRoundTrip(t *testing.T) {
	t.Parallel()
	op := broker.KubeOperation{Namespace: "shop", Pod: "web-1", Container: "app", Command: []string{"sh", "-c", "echo '<a&b>'"}}
	s := op.String()
	if want := `{"namespace":"shop","pod":"web-1","container":"app","command":["sh","-c","echo '<a&b>'"]}`; s != want {
		t.Errorf("String() = %s, want %s", s, want)
	}
	back, err := broker.ParseKubeOperation(s)
	if err != nil || back.String() != s {
		t.Errorf("round trip: %v %v", back, err)
	}
	line, err := op.CommandLine()
	if err != nil || line != `sh -c "echo '<a&b>'"` {
		t.Errorf("CommandLine() = %q, %v", line, err)
	}
}

// FuzzParseKubeOperation: whatever parses re-encodes to JSON that parses to
// the same operation, and its command line quotes back without error unless
// an argument holds a NUL byte.
func FuzzParseKubeOperation(f *testing.F) {
	f.Add(`{"namespace":"shop","pod":"web-1","container":"app","command":["ls","-l"]}`)
	f.Add(`{"namespace":"a","pod":"b","command":["sh","-c","rm -rf / ; echo $(id)"]}`)
	f.Add(`{"namespace":"a","pod":"b","command":["\u0000"]}`)
	f.Fuzz(func(t *testing.T, s string) {
		op, err := broker.ParseKubeOperation(s)
		if err != nil {
			return
		}
		again, err := broker.ParseKubeOperation(op.String())
		if err != nil || again.String() != op.String() {
			t.Fatalf("re-parse of %s: %v", op.String(), err)
		}
		if _, err := op.CommandLine(); err != nil && !strings.Contains(strings.Join(op.Command, ""), "\x00") {
			t.Fatalf("CommandLine(%q): %v", op.Command, err)
		}
	})
}
