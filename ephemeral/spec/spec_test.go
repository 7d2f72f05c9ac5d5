package spec_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/spec"
)

// TestSecretsDoNotPrint: secrets never reach fmt, slog or (for Secret) JSON; a
// WireSecret reaches JSON only, for the broker → proxy channel.
func TestSecretsDoNotPrint(t *testing.T) {
	const pw = "hunter2-very-secret"
	g := spec.Grant{ID: "g1", ClientSecret: spec.WireSecret(pw), Credential: spec.Credential{Username: "u", Password: spec.WireSecret(pw), Token: spec.WireSecret(pw)}}
	s := spec.NewSecret(pw)
	var logBuf strings.Builder
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "grant", g, "secret", s, "pw", g.Credential.Password)
	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", g), "%+v": fmt.Sprintf("%+v", g), "%#v": fmt.Sprintf("%#v", g), "%s": fmt.Sprintf("%s", s),
		"%q": fmt.Sprintf("%q", g.Credential.Password), "slog": logBuf.String(),
	} {
		if strings.Contains(out, pw) {
			t.Errorf("%s printed the secret: %s", name, out)
		}
	}
	b, _ := json.Marshal(s)
	if strings.Contains(string(b), pw) {
		t.Errorf("Secret marshalled its value: %s", b)
	}
	b, _ = json.Marshal(g)
	var back spec.Grant
	if err := json.Unmarshal(b, &back); err != nil || string(back.Credential.Password) != pw {
		t.Fatalf("the wire form must round-trip the credential: %v", err)
	}
	if back.Credential.Password.Secret().Reveal() != pw {
		t.Fatal("Reveal lost the value")
	}
}

func TestEnumsRoundTrip(t *testing.T) {
	for _, a := range []spec.Access{spec.AccessNone, spec.Read, spec.Write, spec.Admin} {
		b, _ := a.MarshalText()
		var back spec.Access
		if err := back.UnmarshalText(b); err != nil || back != a {
			t.Errorf("access %v: %v %v", a, back, err)
		}
	}
	for _, p := range []spec.Protocol{spec.ProtocolUnknown, spec.Postgres, spec.SSH, spec.HTTP, spec.Kube} {
		b, _ := p.MarshalText()
		var back spec.Protocol
		if err := back.UnmarshalText(b); err != nil || back != p {
			t.Errorf("protocol %v: %v %v", p, back, err)
		}
	}
	var m spec.Mode
	if err := m.UnmarshalText([]byte("sessions")); err == nil {
		t.Error("unknown mode accepted")
	}
	if _, err := spec.ParseAccess("root"); err == nil {
		t.Error("unknown access accepted")
	}
}
