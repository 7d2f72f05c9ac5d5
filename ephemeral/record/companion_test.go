package record_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record"
)

// TestCompanionsSealed: the casts next to a recording are sealed by digest
// into its final, signed chunk; an edited cast no longer matches.
func TestCompanionsSealed(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t)
	r, err := record.Create(context.Background(), record.Config{Dir: dir, Signer: key, FlushInterval: -1,
		Header: record.Header{GrantID: "g-cast", Identity: "i", Target: "box", Rule: "r", Mode: "session"}})
	if err != nil {
		t.Fatal(err)
	}
	cast := filepath.Join(dir, "g-cast.conn1.ch0.cast")
	body := "{\"version\":2,\"width\":80,\"height\":24}\n[0.1,\"o\",\"$ id\\r\\n\"]\n"
	for name, b := range map[string]string{cast: body, filepath.Join(dir, "g-castother.conn1.ch0.cast"): "x", filepath.Join(dir, "g-other.conn1.ch0.cast"): "y"} {
		if err := os.WriteFile(name, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	var evs []record.Event
	rep, err := record.VerifyFile(r.Path(), record.VerifyOptions{PublicKey: key.PublicKey(), OnEvent: func(ev record.Event) error {
		evs = append(evs, ev)
		return nil
	}})
	if err != nil || !rep.Complete || !rep.Signed {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	cs := record.Companions(evs)
	if len(cs) != 1 || cs[0].Name != "g-cast.conn1.ch0.cast" || cs[0].Size != int64(len(body)) {
		t.Fatalf("companions %+v, want exactly g-cast.conn1.ch0.cast of %d bytes", cs, len(body))
	}
	if err := cs[0].Check(strings.NewReader(body)); err != nil {
		t.Fatalf("the sealed cast does not check: %v", err)
	}
	for _, edited := range []string{strings.Replace(body, "id", "rm", 1), body[:len(body)-1], body + "\n"} {
		if err := cs[0].Check(strings.NewReader(edited)); !errors.Is(err, record.ErrCompanionMismatch) {
			t.Errorf("edited cast %q: %v, want ErrCompanionMismatch", edited, err)
		}
	}
}

func TestIsCompanionName(t *testing.T) {
	for _, c := range []struct {
		name string
		want bool
	}{
		{"g1.conn1.ch0.cast", true},
		{"g1.cast", false},
		{"g1..cast", false},
		{"g1.x.cast", true},
		{"g10.conn1.ch0.cast", false},
		{"g1.conn1/../x.cast", false},
		{"g1.conn1.ch0.cast.txt", false},
		{"g1.a\\b.cast", false},
	} {
		if got := record.IsCompanionName("g1", c.name); got != c.want {
			t.Errorf("IsCompanionName(g1, %q) = %v, want %v", c.name, got, c.want)
		}
	}
}
