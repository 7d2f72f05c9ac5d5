package local

import "testing"

func TestSCRAMVerifierVector(t *testing.T) {
	// Computed independently (Python hashlib.pbkdf2_hmac + hmac, RFC 5802 / 7677).
	salt := make([]byte, 16)
	for i := range salt {
		salt[i] = byte(i)
	}
	got, err := scramVerifier("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	const want = "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
	if got != want {
		t.Fatalf("verifier\n got %s\nwant %s", got, want)
	}
}

func TestQuoteLiteral(t *testing.T) {
	for in, want := range map[string]string{"abc": "'abc'", "a'b": "'a''b'", "": "''"} {
		if got, err := quoteLiteral(in); err != nil || got != want {
			t.Errorf("quoteLiteral(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`a\'; DROP ROLE x; --`, "a\x00b"} {
		if got, err := quoteLiteral(in); err == nil {
			t.Errorf("quoteLiteral(%q) = %q, want refusal", in, got)
		}
	}
}
