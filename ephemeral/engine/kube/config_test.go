package kube_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/kube"
	"github.com/jitgate/jitgate/ephemeral/guard/shell"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func TestNewRefusesIncompleteConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec, err := record.Open(dir, record.Header{GrantID: "g1", Mode: "session"})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	gd, _ := shell.New(shell.Config{})
	good := func() *spec.Grant {
		return &spec.Grant{ID: "g1", Mode: spec.Session, ClientSecret: "s", Deadline: time.Now().Add(time.Hour),
			Target:     spec.Target{Address: "127.0.0.1:6443", CA: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
			Credential: spec.Credential{Token: "t"}, Guard: spec.Guard{Access: spec.Read, Kube: spec.KubeScope{Namespace: "shop"}},
			Record: spec.Record{Dir: dir}}
	}
	for _, tc := range []struct {
		name string
		edit func(*spec.Grant, *kube.Config)
		want string
	}{
		{"no token", func(g *spec.Grant, _ *kube.Config) { g.Credential.Token = "" }, "no token"},
		{"no namespace", func(g *spec.Grant, _ *kube.Config) { g.Guard.Kube.Namespace = "" }, "names no namespace"},
		{"no address", func(g *spec.Grant, _ *kube.Config) { g.Target.Address = "" }, "no target address"},
		{"bad address", func(g *spec.Grant, _ *kube.Config) { g.Target.Address = "cluster" }, "target address"},
		{"bad CA", func(g *spec.Grant, _ *kube.Config) { g.Target.CA = "not pem" }, "target CA holds no PEM certificate"},
		{"no guard", func(_ *spec.Grant, c *kube.Config) { c.Guard = nil }, "no guard"},
		{"no recorder", func(_ *spec.Grant, c *kube.Config) { c.Recorder = nil }, "no recorder"},
		{"port zero", func(g *spec.Grant, _ *kube.Config) { g.Guard.Kube.Ports = []int{8080, 0} }, "port 0 is not a port number"},
		{"port too large", func(g *spec.Grant, _ *kube.Config) { g.Guard.Kube.Ports = []int{65536} }, "port 65536 is not a port number"},
	} {
		g := good()
		cfg := kube.Config{Grant: g, Guard: gd, Recorder: rec}
		tc.edit(g, &cfg)
		_, err := kube.New(cfg)
		if !errors.Is(err, kube.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want ErrConfig with %q, got %v", tc.name, tc.want, err)
		}
	}
}

// TestUpstreamCertificateVerified: an API server whose certificate does
// not chain to Target.CA is never talked to with the token.
func TestUpstreamCertificateVerified(t *testing.T) {
	t.Parallel()
	p := startProxy(t, opts{scope: defaultScope()})
	// Another CA than the double's (httptest servers all share one
	// certificate, so make a fresh one).
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p2 := *p
	g := *p.grant
	g.Target.CA = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	gd, _ := shell.New(shell.Config{})
	eng, err := kube.New(kube.Config{Grant: &g, Guard: gd, Recorder: p.rec})
	if err != nil {
		t.Fatal(err)
	}
	p2.eng, p2.grant = eng, &g
	p2.addr = serveEngine(t, eng)
	before := len(p.up.Requests())
	code, body := p2.rawRequest(t, "GET", "/api/v1/namespaces/shop/pods/web-1", nil)
	if code != 502 || !strings.Contains(body, "certificate") {
		t.Fatalf("want 502 naming the certificate, got %d %s", code, body)
	}
	if len(p.up.Requests()) != before {
		t.Fatal("the API server saw a request over an unverified connection")
	}
}
