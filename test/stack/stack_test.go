package stack_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/test/sshtest"
	"github.com/jitgate/jitgate/test/stack"
)

func TestRun(t *testing.T) {
	t.Parallel()
	out, errOut, code, err := stack.Run("/bin/sh", nil, "in\n", "-c", "cat; echo err >&2; exit 3")
	if err != nil || code != 3 || out != "in\n" || errOut != "err\n" {
		t.Fatalf("Run = %q %q %d %v, want in, err, 3, nil", out, errOut, code, err)
	}
	if _, _, _, err := stack.Run("/nonexistent/jitgate", nil, ""); err == nil {
		t.Fatal("Run of a missing program: no error")
	}
}

func TestProcessStopAndKill(t *testing.T) {
	t.Parallel()
	// A shell that ignores SIGTERM is SIGKILLed (with its group) after StopGrace.
	p := stack.StartProcess(t, stack.ProcessConfig{Bin: "/bin/sh", Args: []string{"-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"}, StopGrace: 100 * time.Millisecond})
	for end := time.Now().Add(10 * time.Second); !strings.Contains(p.Logs.String(), "up") && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if p.PID() <= 0 {
		t.Fatalf("PID %d", p.PID())
	}
	p.Stop()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Stop returned before the process exited")
	}
	p.Stop() // stopping again does nothing

	k := stack.StartProcess(t, stack.ProcessConfig{Bin: "/bin/sleep", Args: []string{"60"}})
	k.Kill()
	select {
	case <-k.Exited():
	default:
		t.Fatal("Kill returned before the process exited")
	}
}

func TestAPIAndHealthy(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			w.WriteHeader(200)
		case "/json":
			if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(401)
			}
			_, _ = w.Write([]byte(`{"ok":true}`))
		default:
			w.WriteHeader(500)
			_, _ = w.Write([]byte("boom"))
		}
	}))
	t.Cleanup(srv.Close)
	stack.WaitHealthy(t, srv.URL+"/healthz", nil)
	code, body, err := stack.API(srv.URL, "tok", "POST", "/json", map[string]any{"a": 1})
	if err != nil || code != 200 || body["ok"] != true {
		t.Fatalf("API = %d %v %v", code, body, err)
	}
	code, _, err = stack.API(srv.URL, "", "GET", "/other", nil)
	if code != 500 || err == nil || !strings.Contains(err.Error(), "body not JSON: boom") {
		t.Fatalf("API of a non-JSON answer = %d %v, want 500 and a not-JSON error", code, err)
	}
	if a := stack.FreeAddr(t); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q, want loopback", a)
	}
}

func TestIssuer(t *testing.T) {
	t.Parallel()
	iss := stack.StartIssuer(t)
	if !strings.HasPrefix(iss.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %q", iss.URL)
	}
	pem, err := os.ReadFile(iss.CAFile)
	if err != nil || !strings.Contains(string(pem), "BEGIN CERTIFICATE") {
		t.Fatalf("CAFile: %v %.40q", err, pem)
	}
	if got := iss.Env(); len(got) != 1 || got[0] != "SSL_CERT_FILE="+iss.CAFile {
		t.Fatalf("Env = %v", got)
	}
	if tok := iss.Token(t, "agent", "ai-agents"); strings.Count(tok, ".") != 2 {
		t.Fatalf("Token = %q, want a JWS", tok)
	}
	pol := iss.TrustIn("version: 1\nissuers:\n  - name: corp\n")
	if !strings.Contains(pol, "issuers:\n  - name: test\n    issuer: "+iss.URL+"\n    audience: jitgate\n    groups_claim: groups\n  - name: corp\n") {
		t.Fatalf("TrustIn:\n%s", pol)
	}
}

func TestSSHPolicyTarget(t *testing.T) {
	t.Parallel()
	srv := &sshtest.Server{Addr: "127.0.0.1:2222", User: "app", KnownHosts: "[127.0.0.1]:2222 ssh-ed25519 AAAA"}
	got := stack.SSHPolicyTarget("box", srv, "/tmp/ssh_ca", "commands: {interactive: true}")
	want := `  - name: box
    kind: ssh
    address: 127.0.0.1:2222
    user: app
    known_hosts: ["[127.0.0.1]:2222 ssh-ed25519 AAAA"]
    credentials: {source: local, ca_key: "file:/tmp/ssh_ca"}
    masking: {detectors: [credit_card]}
    commands: {interactive: true}`
	if got != want {
		t.Fatalf("SSHPolicyTarget:\n%s\nwant:\n%s", got, want)
	}
}
