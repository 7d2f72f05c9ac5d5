package kube_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/kubetest"
)

const card = "4111 1111 1111 1111"

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// proxy is an engine serving one grant on a loopback listener, in front of
// a kubetest double.
type proxy struct {
	eng   *kube.Engine
	grant *spec.Grant
	addr  string
	rec   *record.Recorder
	dir   string
	up    *kubetest.Server
}

type opts struct {
	scope    spec.KubeScope
	commands spec.Commands
	deadline time.Time
	mode     spec.Mode
	op       string
	pods     []kubetest.Pod
	noMask   bool
	// maxRecorded is Config.MaxRecordedOutput (0: the default).
	maxRecorded int
}

func defaultScope() spec.KubeScope {
	return spec.KubeScope{Namespace: "shop", Exec: true}
}

func startProxy(t testing.TB, o opts) *proxy {
	t.Helper()
	up := kubetest.Start(t)
	if o.pods != nil {
		up = kubetest.StartPods(t, o.pods)
	}
	dir := t.TempDir()
	if o.deadline.IsZero() {
		o.deadline = time.Now().Add(time.Hour)
	}
	if o.mode == spec.ModeUnknown {
		o.mode = spec.Session
	}
	g := &spec.Grant{ID: "g-" + randHex(4), Mode: o.mode, ClientSecret: spec.WireSecret("s3cret-" + randHex(8)),
		Target:   spec.Target{Name: "cluster", Protocol: spec.Kube, Address: up.Addr(), CA: up.CAPEM()},
		Deadline: o.deadline, Credential: spec.Credential{Token: spec.WireSecret(up.Token())},
		Guard:  spec.Guard{Access: spec.Read, Commands: o.commands, Kube: o.scope},
		Record: spec.Record{Dir: dir}, Operation: o.op}
	rec, err := record.Open(dir, record.Header{GrantID: g.ID, Mode: o.mode.String()})
	if err != nil {
		t.Fatal(err)
	}
	deny := append([]string(nil), o.commands.Deny...)
	if !o.scope.CopyFiles {
		deny = append(deny, "tar")
	}
	gd, err := shell.New(shell.Config{Allow: o.commands.Allow, Deny: deny})
	if err != nil {
		t.Fatal(err)
	}
	mk, err := mask.New(mask.Config{Detectors: []string{"credit_card", "aws_access_key"}})
	if err != nil {
		t.Fatal(err)
	}
	if o.noMask {
		mk = nil
	}
	eng, err := kube.New(kube.Config{Grant: g, Guard: gd, Masker: mk, Recorder: rec, MaxRecordedOutput: o.maxRecorded})
	if err != nil {
		t.Fatal(err)
	}
	return &proxy{eng: eng, grant: g, addr: serveUntil(t, eng, o.deadline, rec), rec: rec, dir: dir, up: up}
}

// serveEngine serves eng on a loopback listener until the test ends.
func serveEngine(t testing.TB, eng *kube.Engine) string {
	return serveUntil(t, eng, time.Now().Add(time.Hour), nil)
}

func serveUntil(t testing.TB, eng *kube.Engine, deadline time.Time, rec *record.Recorder) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	done := make(chan struct{})
	var wg sync.WaitGroup
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); _ = eng.Serve(ctx, c) }()
		}
	}()
	context.AfterFunc(ctx, func() { ln.Close() })
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop within 10s of cancel")
		}
		if rec != nil {
			rec.Close()
		}
	})
	return ln.Addr().String()
}

// events flushes and reads the recording so far.
func (p *proxy) events(t testing.TB) []record.Event {
	t.Helper()
	if err := p.rec.Flush(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(p.rec.Path())
	if err != nil && !strings.Contains(err.Error(), "unexpected end") {
		t.Fatal(err)
	}
	return evs
}

// client is an HTTPS client trusting the proxy's certificate.
func (p *proxy) client(t testing.TB) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(p.eng.CertificatePEM())) {
		t.Fatal("proxy certificate is not PEM")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, Proxy: nil}, Timeout: 20 * time.Second}
}

// plant writes a file into the double's working directory.
func (p *proxy) plant(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(p.up.Dir(), name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// upstreamSaw reports whether the double saw a request whose path contains s.
func (p *proxy) upstreamSaw(s string) bool {
	for _, r := range p.up.Requests() {
		if strings.Contains(r.Path+"?"+r.Query, s) {
			return true
		}
	}
	return false
}

type kubectlResult struct {
	out, err string
	code     int
}

func (r kubectlResult) String() string {
	return "exit " + itoa(r.code) + "\nstdout: " + r.out + "\nstderr: " + r.err
}

func itoa(i int) string { return strconv.Itoa(i) }

// kubectl runs the real kubectl against the proxy with a kubeconfig whose
// token is secret (the grant secret unless overridden).
func (p *proxy) kubectl(t testing.TB, env []string, secret string, args ...string) kubectlResult {
	t.Helper()
	return p.kubectlIn(t, "", env, secret, args...)
}

// kubectlIn is kubectl with stdin.
func (p *proxy) kubectlIn(t testing.TB, stdin string, env []string, secret string, args ...string) kubectlResult {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH; the real-kubectl tests need it")
	}
	if secret == "" {
		secret = string(p.grant.ClientSecret)
	}
	home := t.TempDir()
	kc := filepath.Join(home, "kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\nclusters:\n- name: jitgate\n  cluster:\n    server: https://" + p.addr +
		"\n    certificate-authority-data: " + base64.StdEncoding.EncodeToString([]byte(p.eng.CertificatePEM())) +
		"\nusers:\n- name: agent\n  user:\n    token: " + secret +
		"\ncontexts:\n- name: jitgate\n  context:\n    cluster: jitgate\n    user: agent\ncurrent-context: jitgate\n"
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--request-timeout=30s"}, args...)...)
	cmd.Env = append([]string{"KUBECONFIG=" + kc, "HOME=" + home, "CLOUDSDK_CORE_DISABLE_PROMPTS=1",
		"PATH=" + os.Getenv("PATH"), "NO_PROXY=*", "no_proxy=*"}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kubectl: %v", err)
	}
	return kubectlResult{out: out.String(), err: errb.String(), code: code}
}
