package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// FuzzValueCounts: whatever the key and value, a value shown masked counts
// at least once in MaskCounts, and a value shown as is is unchanged and
// counts nothing (unless its URL password already reads "********").
func FuzzValueCounts(f *testing.F) {
	for _, s := range []struct{ k, v string }{
		{"flags/db_url", "postgres://app:pg-Secret-9@db.internal:5432/app"},
		{"flags/banner", "pay with 4111 1111 1111 1111"},
		{"flags/token", "x"},
		{"flags/seed", "q8Zr2Lk9Vx4Tp7Mn3Bw6Yh1D"},
		{"flags/m", "https://a:pw1@one/ https://b@two/ ftp://c:pw3@three"},
		{"flags/beta", "true"},
		{"flags/x", "a://:@"},
	} {
		f.Add(s.k, s.v)
	}
	dir := f.TempDir()
	rec, err := record.Open(dir, record.Header{GrantID: "g-fuzz", Mode: "exec"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { rec.Close() })
	mk, err := mask.New(mask.Config{Detectors: []string{"all"}})
	if err != nil {
		f.Fatal(err)
	}
	g := &spec.Grant{ID: "g-fuzz", Mode: spec.Exec, Operation: "x",
		Target:   spec.Target{Name: "c", Protocol: spec.Config, Address: "kv:secret/app"},
		Deadline: time.Now().Add(time.Hour), Guard: spec.Guard{Access: spec.Read, Config: spec.ConfigScope{Keys: []string{"flags/*"}}},
		Record: spec.Record{Dir: dir}}
	eng, err := config.New(config.Config{Grant: g, Masker: mk, Recorder: rec})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key, v string) {
		before := sum(eng.MaskCounts())
		out, masked := eng.Value(key, v)
		counted := sum(eng.MaskCounts()) - before
		switch {
		case masked && counted == 0:
			t.Fatalf("Value(%q, %q) = %q masked, counted nothing", key, v, out)
		case !masked && counted != 0 && !strings.Contains(v, ":********@"):
			t.Fatalf("Value(%q, %q) shown as is, counted %d", key, v, counted)
		case !masked && out != v:
			t.Fatalf("Value(%q, %q) = %q changed but not marked masked", key, v, out)
		}
	})
}
