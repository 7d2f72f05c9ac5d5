package sshca_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/jitgate/jitgate/broker/credentials"
	"github.com/jitgate/jitgate/broker/credentials/sshca"
	"github.com/jitgate/jitgate/ephemeral/spec"
	"github.com/jitgate/jitgate/test/sshtest"
)

type fixture struct {
	srv    *sshtest.Server
	signer ssh.Signer
}

func setup(t *testing.T) fixture {
	t.Helper()
	signer, line, err := sshca.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	return fixture{srv: sshtest.Start(t, sshtest.Config{TrustedUserCAKeys: [][]byte{line}}), signer: signer}
}

func (f fixture) ca(t *testing.T, mod func(*sshca.Config)) *sshca.CA {
	t.Helper()
	cfg := sshca.Config{CA: f.signer, Principals: map[spec.Access]string{spec.Read: f.srv.User, spec.Write: f.srv.User},
		RevokedKeysFile: f.srv.RevokedKeysFile}
	if mod != nil {
		mod(&cfg)
	}
	ca, err := sshca.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func (f fixture) run(cred spec.Credential, cmd string) (string, error) {
	signer, err := sshca.Signer(cred)
	if err != nil {
		return "", err
	}
	_, _, hk, _, _, err := ssh.ParseKnownHosts([]byte(f.srv.KnownHosts))
	if err != nil {
		return "", err
	}
	client, err := ssh.Dial("tcp", f.srv.Addr, &ssh.ClientConfig{User: f.srv.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(hk), Timeout: 10 * time.Second})
	if err != nil {
		return "", err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	return string(out), err
}

func request(a spec.Access, ttl time.Duration) credentials.Request {
	return credentials.Request{GrantID: fmt.Sprintf("g-%d", time.Now().UnixNano()), Access: a, Expires: time.Now().Add(ttl).Truncate(time.Second)}
}

func TestIssuedCertificateLogsIn(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ca := f.ca(t, nil)
	req := request(spec.Read, time.Hour)
	cred, err := ca.Issue(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.run(cred, "id -un")
	if err != nil || strings.TrimSpace(out) != f.srv.User {
		t.Fatalf("login with issued certificate: out %q err %v", out, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	cert := pub.(*ssh.Certificate)
	switch {
	case cert.KeyId != "jitgate:"+req.GrantID:
		t.Errorf("KeyId %q", cert.KeyId)
	case len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != f.srv.User:
		t.Errorf("principals %v", cert.ValidPrincipals)
	case cert.ValidBefore != uint64(req.Expires.Unix()) || !cred.Expires.Equal(req.Expires):
		t.Errorf("ValidBefore %d / Expires %s, want %s", cert.ValidBefore, cred.Expires, req.Expires)
	case time.Since(time.Unix(int64(cert.ValidAfter), 0)) < sshca.Skew-5*time.Second:
		t.Errorf("ValidAfter %d is not about now-30s", cert.ValidAfter)
	case len(cert.Extensions) != 0 || len(cert.CriticalOptions) != 0:
		t.Errorf("certificate permits more than a command: %v %v", cert.Extensions, cert.CriticalOptions)
	case cred.LeaseID != fmt.Sprintf("%s%d", sshca.LeasePrefix, cert.Serial):
		t.Errorf("lease %q, serial %d", cred.LeaseID, cert.Serial)
	case cred.Username != f.srv.User || cred.Password != "":
		t.Errorf("username %q password set %v", cred.Username, cred.Password != "")
	}
	if !bytesEqual(cert.SignatureKey.Marshal(), f.signer.PublicKey().Marshal()) {
		t.Error("certificate not signed by the CA")
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestPermissions(t *testing.T) {
	t.Parallel()
	signer, _, _ := sshca.GenerateCA()
	ca, err := sshca.New(sshca.Config{CA: signer, Principals: map[spec.Access]string{spec.Read: "u"}, SourceAddresses: []string{"127.0.0.1/32"}})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := ca.IssueWith(t.Context(), request(spec.Read, time.Hour), sshca.Permissions{PTY: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(cred.Certificate))
	cert := pub.(*ssh.Certificate)
	if _, ok := cert.Extensions["permit-pty"]; !ok || len(cert.Extensions) != 1 {
		t.Errorf("extensions %v, want permit-pty only", cert.Extensions)
	}
	if cert.CriticalOptions["source-address"] != "127.0.0.1/32" {
		t.Errorf("critical options %v", cert.CriticalOptions)
	}
}

func TestExpiredCertificateRefusedBySSHD(t *testing.T) {
	t.Parallel()
	f := setup(t)
	past := time.Now().Add(-2 * time.Hour)
	ca := f.ca(t, func(c *sshca.Config) { c.Now = func() time.Time { return past } })
	cred, err := ca.Issue(t.Context(), credentials.Request{GrantID: "expired", Access: spec.Read, Expires: past.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(cred, "id"); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("login with a certificate past ValidBefore: %v, want an authentication failure", err)
	}
}

func TestWrongPrincipalRefusedBySSHD(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ca := f.ca(t, func(c *sshca.Config) { c.Principals = map[spec.Access]string{spec.Read: "someone-else"} })
	cred, err := ca.Issue(t.Context(), request(spec.Read, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(cred, "id"); err == nil {
		t.Fatal("a certificate for another principal logged in")
	}
}

func TestRevokeEndsLogin(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ca := f.ca(t, nil)
	cred, err := ca.Issue(t.Context(), request(spec.Write, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.run(cred, "true"); err != nil {
		t.Fatalf("login before revoke: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := ca.Revoke(t.Context(), cred); err != nil {
			t.Fatalf("Revoke #%d: %v", i+1, err)
		}
	}
	serial, _ := sshca.ParseLease(cred.LeaseID)
	if !ca.Revoked(serial) {
		t.Error("Revoked(serial) = false after Revoke")
	}
	if _, err := f.run(cred, "true"); err == nil {
		t.Fatal("login after Revoke succeeded")
	}
	// Other certificates still work.
	other, _ := ca.Issue(t.Context(), request(spec.Write, time.Hour))
	if _, err := f.run(other, "true"); err != nil {
		t.Fatalf("another certificate after a revoke: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	signer, _, _ := sshca.GenerateCA()
	ca, err := sshca.New(sshca.Config{CA: signer, Principals: map[spec.Access]string{spec.Read: "u"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []spec.Access{spec.Admin, spec.Write, spec.AccessNone} {
		if _, err := ca.Issue(t.Context(), request(a, time.Hour)); !errors.Is(err, credentials.ErrNoRole) {
			t.Errorf("Issue(%s) = %v, want ErrNoRole", a, err)
		}
	}
	for name, req := range map[string]credentials.Request{
		"expired":   {GrantID: "x", Access: spec.Read, Expires: time.Now().Add(-time.Minute)},
		"no grant":  {Access: spec.Read, Expires: time.Now().Add(time.Hour)},
		"no expiry": {GrantID: "x", Access: spec.Read},
	} {
		if _, err := ca.Issue(t.Context(), req); err == nil {
			t.Errorf("Issue(%s) succeeded", name)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := ca.Issue(ctx, request(spec.Read, time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Issue with a cancelled context: %v", err)
	}
	if err := ca.Revoke(t.Context(), spec.Credential{LeaseID: "local:pg:1"}); err == nil {
		t.Error("Revoke of a foreign lease succeeded")
	}
	for _, cfg := range []sshca.Config{
		{Principals: map[spec.Access]string{spec.Read: "u"}},
		{CA: signer, Principals: map[spec.Access]string{spec.Read: ""}},
		{CA: signer, Principals: map[spec.Access]string{spec.Read: "a,b"}},
		{CA: signer, Principals: map[spec.Access]string{spec.AccessNone: "u"}},
	} {
		if _, err := sshca.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg.Principals)
		}
	}
}

func TestConcurrentIssuesAreDistinct(t *testing.T) {
	t.Parallel()
	signer, _, _ := sshca.GenerateCA()
	ca, _ := sshca.New(sshca.Config{CA: signer, Principals: map[spec.Access]string{spec.Read: "u"}})
	const n = 16
	creds := make([]spec.Credential, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ca.Issue(context.Background(), request(spec.Read, time.Hour))
			if err != nil {
				t.Error(err)
			}
			creds[i] = c
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, c := range creds {
		for _, v := range []string{c.LeaseID, string(c.PrivateKey), c.Certificate} {
			if seen[v] {
				t.Fatalf("two grants share %q", v[:min(len(v), 40)])
			}
			seen[v] = true
		}
	}
}

func TestPrivateKeyNeverPrinted(t *testing.T) {
	t.Parallel()
	signer, _, _ := sshca.GenerateCA()
	ca, _ := sshca.New(sshca.Config{CA: signer, Principals: map[spec.Access]string{spec.Read: "u"}})
	cred, err := ca.Issue(t.Context(), request(spec.Read, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Split(string(cred.PrivateKey), "\n")[1] // a line of the key's base64
	red := credentials.Redacted(cred)
	js, _ := json.Marshal(red)
	_, ierr := ca.Issue(t.Context(), request(spec.Admin, time.Hour))
	for what, out := range map[string]string{
		"redacted": fmt.Sprintf("%v %+v %#v %s", red, red, red, red),
		"json":     string(js),
		"ca":       fmt.Sprintf("%v %+v", ca, ca),
		"error":    ierr.Error(),
	} {
		if strings.Contains(out, body) {
			t.Errorf("%s output contains the private key", what)
		}
	}
	if !strings.Contains(string(js), cred.LeaseID) {
		t.Errorf("redacted JSON lost the lease id: %s", js)
	}
}

func TestLoadCA(t *testing.T) {
	t.Parallel()
	pemBytes, err := sshca.GenerateCAPEM()
	if err != nil {
		t.Fatal(err)
	}
	s, err := sshca.LoadCA(pemBytes)
	if err != nil || s.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("LoadCA: %v", err)
	}
	if _, err := sshca.LoadCA([]byte("not a key")); err == nil {
		t.Fatal("LoadCA of garbage succeeded")
	}
}
