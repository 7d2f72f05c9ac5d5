package config_test

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/mask"
	"github.com/jitgate/jitgate/ephemeral/record"
	"github.com/jitgate/jitgate/ephemeral/session"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

const (
	awsKey = "AKIAIOSFODNN7EXAMPLE"
	card   = "4111 1111 1111 1111"
	apiTok = "q8Zr2Lk9Vx4Tp7Mn3Bw6Yh1D"
)

// store is what the broker hands over: the values of the exposed keys, plus
// one it must never show (admin/root_password is outside the globs).
var store = map[string]string{
	"flags/beta":           "true",
	"flags/color":          awsKey, // a secret under an innocent name
	"flags/banner":         "pay with " + card,
	"flags/db_url":         "postgres://app:pg-Secret-9@db.internal:5432/app",
	"flags/api_token":      "short",
	"flags/cache_seed":     apiTok, // random-looking
	"flags/public_key_id":  "k-1",
	"db/host":              "db.internal",
	"admin/root_password":  "root-pass-never-shown",
	"flags.bak/beta":       "stale",
	"flags/nested/private": "n",
}

type fixture struct {
	eng *config.Engine
	rec *record.Recorder
}

func newEngine(t *testing.T, keys, reveal []string, detectors []string) fixture {
	t.Helper()
	vals := map[string]spec.WireSecret{}
	for k, v := range store {
		vals[k] = spec.WireSecret(v)
	}
	g := &spec.Grant{ID: "g-config", Mode: spec.Exec, Operation: "x",
		Target:     spec.Target{Name: "app-config", Protocol: spec.Config, Address: "kv:secret/app"},
		Deadline:   time.Now().Add(time.Hour),
		Credential: spec.Credential{Values: vals, LeaseID: "kv:secret/app#config"},
		Guard:      spec.Guard{Access: spec.Read, Config: spec.ConfigScope{Keys: keys, Reveal: reveal}},
		Record:     spec.Record{Dir: t.TempDir()}}
	rec, err := record.Open(g.Record.Dir, record.Header{GrantID: g.ID, Mode: "exec"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	var mk *mask.Masker
	if detectors != nil {
		if mk, err = mask.New(mask.Config{Detectors: detectors}); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := config.New(config.Config{Grant: g, Masker: mk, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{eng, rec}
}

func rows(r *spec.Result) map[string]string {
	out := map[string]string{}
	for _, row := range r.Rows {
		out[*row[0]] = *row[1]
	}
	return out
}

func TestExecReadsAndMasks(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/*", "db/host"}, []string{"flags/beta", "flags/public_*"}, []string{"credit_card", "aws_access_key"})
	res, err := f.eng.Exec(t.Context(), "flags/*")
	if err != nil {
		t.Fatal(err)
	}
	got := rows(res)
	want := map[string]func(string) bool{
		"flags/beta":          func(v string) bool { return v == "true" },
		"flags/color":         func(v string) bool { return !strings.Contains(v, awsKey) },
		"flags/banner":        func(v string) bool { return strings.HasPrefix(v, "pay with ") && !strings.Contains(v, card) },
		"flags/db_url":        func(v string) bool { return v == "postgres://app:********@db.internal:5432/app" },
		"flags/api_token":     func(v string) bool { return v == "********" },
		"flags/cache_seed":    func(v string) bool { return v == "********" },
		"flags/public_key_id": func(v string) bool { return v == "k-1" }, // revealed despite "key" in its name
	}
	if len(got) != len(want) {
		t.Fatalf("keys %v, want %d (flags/nested/private is not a field of flags)", got, len(want))
	}
	for k, ok := range want {
		if v, present := got[k]; !present || !ok(v) {
			t.Errorf("%s = %q", k, v)
		}
	}
	if res.Tag != "KEYS 7" || res.Columns[0] != "key" || res.Columns[1] != "value" {
		t.Errorf("tag %q columns %v", res.Tag, res.Columns)
	}
	// The recording holds the keys read and masked values only.
	if err := f.rec.Flush(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(f.rec.Path())
	_, evs, err := record.ReadFile(f.rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	var sawRows bool
	for _, ev := range evs {
		if ev.Type == record.Rows && len(ev.Rows) == 7 {
			sawRows = true
		}
		for _, row := range ev.Rows {
			for _, c := range row {
				if c != nil && (strings.Contains(*c, awsKey) || strings.Contains(*c, "pg-Secret-9") || strings.Contains(*c, apiTok)) {
					t.Errorf("unmasked value recorded: %q", *c)
				}
			}
		}
	}
	if !sawRows || len(raw) == 0 {
		t.Fatalf("no rows event in %+v", evs)
	}
}

// TestExecRefusals is the adversarial table: what is refused, with the exact
// reason, and that nothing outside the target's globs ever comes back.
func TestExecRefusals(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/*", "db/host"}, nil, []string{"credit_card"})
	for _, tc := range []struct {
		op, reason string
	}{
		{"admin/root_password", `key "admin/root_password" is not one this target exposes (flags/*, db/host)`},
		{"db/password", `key "db/password" is not one this target exposes (flags/*, db/host)`},
		{"flags/../admin/root_password", `path segment ".." is not allowed`},
		{"../admin/root_password", `path segment ".." is not allowed`},
		{"flags/./beta", `path segment "." is not allowed`},
		{"flags//beta", "empty path segment"},
		{"/flags/beta", "empty path segment"},
		{"flags/", "want <secret path>/<field>"},
		{"beta", "want <secret path>/<field>"},
		{"*/root_password", "globs only in the field"},
		{"admin/*", `glob "admin/*" is not under a path this target exposes`},
		{"flags*/beta", "globs only in the field"},
		{"flags/**", ""}, // ** is * within one segment: only flags/ fields
		{"flags/nested/private", `key "flags/nested/private" is not one this target exposes`},
		{"flags.bak/beta", `key "flags.bak/beta" is not one this target exposes`},
		{"flags\\..\\admin/x", "byte '\\\\' is not allowed"},
		{"flags/be ta", "byte ' ' is not allowed"},
		{"flags/[", "bad glob"},
		{"flags/nope", `key "flags/nope" does not exist in the store`},
		{"flags/zz*", `glob "flags/zz*" matches no key this target exposes`},
		{"", "empty key"},
	} {
		res, err := f.eng.Exec(t.Context(), tc.op)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("%q: %v", tc.op, err)
			}
			for k := range rows(res) {
				if !strings.HasPrefix(k, "flags/") || strings.Count(k, "/") != 1 {
					t.Errorf("%q returned %s", tc.op, k)
				}
			}
			continue
		}
		if !errors.Is(err, session.ErrBlocked) || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%q: got %v, want a refusal containing %q", tc.op, err, tc.reason)
		}
		if res != nil {
			t.Errorf("%q: result %v with a refusal", tc.op, res)
		}
	}
}

// TestGlobNeverEscapes: whatever the request glob, only keys the target's
// globs match come back.
func TestGlobNeverEscapes(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/public_*", "flags/beta"}, nil, nil)
	res, err := f.eng.Exec(t.Context(), "flags/*")
	if err != nil {
		t.Fatal(err)
	}
	got := rows(res)
	if len(got) != 2 || got["flags/beta"] != "true" || got["flags/public_key_id"] != "********" {
		t.Fatalf("got %v", got)
	}
}

func TestNewRefusesBadScope(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec, err := record.Open(dir, record.Header{GrantID: "g", Mode: "exec"})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	for _, sc := range []spec.ConfigScope{
		{},
		{Keys: []string{"../x"}},
		{Keys: []string{"*/x"}},
		{Keys: []string{"a/b"}, Reveal: []string{"a/../b"}},
	} {
		g := &spec.Grant{ID: "g", Target: spec.Target{Protocol: spec.Config}, Guard: spec.Guard{Config: sc}}
		if _, err := config.New(config.Config{Grant: g, Recorder: rec}); !errors.Is(err, config.ErrConfig) {
			t.Errorf("%+v: %v", sc, err)
		}
	}
}

func TestHeuristics(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key  string
		name bool
	}{
		{"a/db_password", true}, {"a/API_TOKEN", true}, {"a/signing_key", true}, {"a/client_secret", true},
		{"a/color", false}, {"a/timeout_ms", false}, {"password/color", false},
	} {
		if got := config.SecretName(tc.key); got != tc.name {
			t.Errorf("SecretName(%q) = %v", tc.key, got)
		}
	}
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{apiTok, true}, {"ghp_Zx8Qw2Er5Ty7Ui9Op1As3Df6Gh4Jk0Lm2", true}, {"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", true},
		{"https://example.com/a", false}, {"hello world, this is fine", false}, {"aaaaaaaaaaaaaaaaaaaaaaaa", false},
		{"2026-11-26T03:00:00Z", false}, {"short", false},
	} {
		if got := config.HighEntropy(tc.v); got != tc.want {
			t.Errorf("HighEntropy(%q) = %v", tc.v, got)
		}
	}
}

func TestSessionModeRefused(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/*"}, nil, nil)
	a, b := netPipe()
	defer a.Close()
	go func() { buf := make([]byte, 256); _, _ = b.Read(buf) }()
	if err := f.eng.Serve(t.Context(), a); !errors.Is(err, session.ErrBlocked) {
		t.Fatalf("Serve: %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"flags/db_url", "flags/*", "a/b/c", "../x", "a/..", "a//b", "a/[", "a/b\\c", "a/*/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := config.ParseKey(s)
		if err != nil {
			return
		}
		// A parsed key never climbs, never has an empty segment, and keeps
		// globs out of its secret path.
		for _, seg := range strings.Split(k.String(), "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("%q parsed with segment %q", s, seg)
			}
		}
		if strings.ContainsAny(k.Dir, "*?[]\\") || k.String() != s {
			t.Fatalf("%q parsed as %+v", s, k)
		}
		// A glob only matches keys in its own secret path.
		if k.Match("zz-other/" + k.Field) {
			t.Fatalf("%q matched another path", s)
		}
	})
}

func netPipe() (net.Conn, net.Conn) { return net.Pipe() }

// FuzzValue: whatever the value, a key that names a secret never shows it,
// and a URL's password never survives (unless revealed).
func FuzzValue(f *testing.F) {
	f.Add("hunter2-x", "db.internal:5432/app")
	f.Add("p@ss", "h")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, pw, host string) {
		e := newEngine(t, []string{"a/*"}, []string{"a/shown"}, []string{"credit_card"}).eng
		if v, masked := e.Value("a/db_password", pw); strings.Trim(pw, "*") != "" && (!masked || strings.Contains(v, pw)) {
			t.Fatalf("password %q shown as %q", pw, v)
		}
		if v, _ := e.Value("a/shown", pw); v != pw {
			t.Fatalf("revealed %q changed to %q", pw, v)
		}
		if len(pw) < 4 || strings.ContainsAny(pw, "@/?#:\"' \t\r\n") || strings.ContainsAny(host, "@\"' \t\r\n") {
			return
		}
		url := "postgres://app:" + pw + "@" + host
		v, _ := e.Value("a/url", url)
		if strings.Contains(v, ":"+pw+"@") {
			t.Fatalf("%q shown as %q", url, v)
		}
	})
}
