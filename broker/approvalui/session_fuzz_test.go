package approvalui

import (
	"strings"
	"testing"
)

// FuzzOpenCookie: a cookie value an attacker writes never opens, and a sealed
// value with any change (or under the other cookie's name) never opens.
func FuzzOpenCookie(f *testing.F) {
	s, err := newSealer([]byte(strings.Repeat("k", 32)))
	if err != nil {
		f.Fatal(err)
	}
	valid, err := s.seal(sessionCookie, sessionData{Token: "eyJhbGciOi.x.y", SID: "sid"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, 0, byte(1))
	f.Add(valid, len(valid)-1, byte(0x20))
	f.Add("", 0, byte(0))
	f.Add(`{"t":"a","s":"b"}`, 3, byte(7))
	f.Fuzz(func(t *testing.T, value string, pos int, flip byte) {
		var d sessionData
		if value != valid {
			if err := s.open(sessionCookie, value, &d); err == nil {
				// Only a value this sealer produced can open; base64 has
				// padding-bit slack, so an equal decoding is the same value.
				if d.Token != "eyJhbGciOi.x.y" || d.SID != "sid" {
					t.Fatalf("forged cookie %q opened to %+v", value, d)
				}
			}
		}
		if err := s.open(loginCookie, valid, &d); err == nil {
			t.Fatal("a session cookie opened as the login cookie")
		}
		if flip == 0 || len(valid) == 0 {
			return
		}
		b := []byte(valid)
		i := ((pos % len(b)) + len(b)) % len(b)
		b[i] ^= flip
		var e sessionData
		if err := s.open(sessionCookie, string(b), &e); err == nil && (e.Token != "eyJhbGciOi.x.y" || e.SID != "sid") {
			t.Fatalf("tampered cookie opened to %+v", e)
		}
	})
}

func TestSealRoundTripAndCSRF(t *testing.T) {
	s1, _ := newSealer([]byte(strings.Repeat("a", 32)))
	s2, _ := newSealer([]byte(strings.Repeat("b", 32)))
	v, err := s1.seal(sessionCookie, sessionData{Token: "tok", SID: "sid"})
	if err != nil {
		t.Fatal(err)
	}
	var d sessionData
	if err := s1.open(sessionCookie, v, &d); err != nil || d.Token != "tok" || d.SID != "sid" {
		t.Fatalf("round trip: %v %+v", err, d)
	}
	if err := s2.open(sessionCookie, v, &d); err == nil {
		t.Fatal("a cookie opened under another key")
	}
	if strings.Contains(v, "tok") {
		t.Fatal("sealed cookie shows its content")
	}
	if s1.csrfFor("sid") == s2.csrfFor("sid") || s1.csrfFor("sid") == s1.csrfFor("sie") || s1.csrfFor("sid") != s1.csrfFor("sid") {
		t.Fatal("CSRF tokens are not keyed per session and key")
	}
	if _, err := s1.seal(sessionCookie, sessionData{Token: strings.Repeat("x", 4000)}); err == nil {
		t.Fatal("an oversized cookie was sealed")
	}
}
