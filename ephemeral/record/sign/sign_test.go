package sign_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record/sign"
)

func TestLoadOrCreateKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, sign.KeyFileName)
	k, err := sign.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", err, st.Mode())
	}
	pub, err := sign.ReadPublicKey(filepath.Join(dir, sign.PublicKeyFileName))
	if err != nil || !pub.Equal(k.Ed25519PublicKey()) {
		t.Fatalf("public key file: %v", err)
	}
	msg := []byte("seal body")
	sig, err := k.Sign(context.Background(), msg)
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("signature does not verify: %v", err)
	}
	again, err := sign.LoadOrCreateKeyFile(path)
	if err != nil || !again.Ed25519PublicKey().Equal(k.Ed25519PublicKey()) {
		t.Fatalf("second load gave another key: %v", err)
	}
	// The private key never prints.
	priv, _ := os.ReadFile(path)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%#v", k), fmt.Sprintf("%+v", k)} {
		if strings.Contains(s, string(priv[30:60])) || strings.Contains(s, fmt.Sprintf("%x", priv)) || len(s) > 60 {
			t.Fatalf("key prints as %q", s)
		}
	}
}

func TestConcurrentCreationAgreesOnOneKey(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), sign.KeyFileName)
	keys := make([]ed25519.PublicKey, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := sign.LoadOrCreateKeyFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k.Ed25519PublicKey()
		}()
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !k.Equal(keys[0]) {
			t.Fatal("racing creators ended with different keys")
		}
	}
}

func TestLoadRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	good := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDer, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPub, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	cases := []struct {
		name string
		path string
		want string
	}{
		{"readable by others", write("open.key", good, 0o644), "accessible by others"},
		{"not PEM", write("junk.key", []byte("hello"), 0o600), "not a PEM PRIVATE KEY"},
		{"ECDSA key", write("ec.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDer}), 0o600), "not an Ed25519 key"},
		{"missing", filepath.Join(dir, "none.key"), "no such file"},
	}
	for _, c := range cases {
		if _, err := sign.LoadKeyFile(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := sign.ReadPublicKey(write("ec.pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPub}), 0o644)); err == nil {
		t.Error("an ECDSA public key was accepted")
	}
	if _, err := sign.LoadOrCreateKeyFile(write("open2.key", good, 0o640)); err == nil {
		t.Error("LoadOrCreate accepted (or replaced) a key readable by the group")
	}
	if sign.PublicKeyPath("/d/recording-signing.key") != "/d/recording-signing.pub" {
		t.Error(sign.PublicKeyPath("/d/recording-signing.key"))
	}
}
