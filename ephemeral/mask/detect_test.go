package mask_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

type detCase struct {
	in     string
	secret string // must not survive; "" = a near miss that must come back unchanged
}

var detectorCases = map[string][]detCase{
	mask.DetectCreditCard: {
		{"4111111111111111", "4111111111111111"},
		{"card 4111 1111 1111 1111.", "4111 1111 1111 1111"},
		{"5555-5555-5555-4444", "5555-5555-5555-4444"},
		{"amex=378282246310005;", "378282246310005"},
		{"6011111111111117", "6011111111111117"},
		{"jcb 3530111333300000", "3530111333300000"},
		{"diners 30569309025904", "30569309025904"},
		{"visa13 4222222222222", "4222222222222"},
		{"mc2 2223003122003222", "2223003122003222"},
		{"x4111111111111111", "4111111111111111"},
		{"1 4111 1111 1111 1111", "4111 1111 1111"},
		{"4111 1111 1111 1111 2", "4111 1111 1111"},
		{"{4111111111111111,5555555555554444}", "5555555555554444"},
		{"4111111111111112", ""},       // Luhn
		{"1234567812345670", ""},       // Luhn-valid, no issuer starts with 1
		{"411111111111", ""},           // 12 digits
		{"4111  1111 1111 1111", ""},   // double separator splits it
		{"94111111111111111", ""},      // glued to another digit
		{"4111111111111111111111", ""}, // 22 digits
		{"order 20240101 total 1999", ""},
		{"3111111111111117", ""}, // 31 is no issuer
	},
	mask.DetectEmail: {
		{"alice@example.com", "alice@example.com"},
		{"Mail bob.smith+tag@sub.example.co.uk now", "bob.smith+tag"},
		{"<x@y.io>", "x@y.io"},
		{"alice@example.com.", "alice@example.com"},
		{"user@localhost", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"a@b.c", ""},
		{"alice@example.123", ""},
		{"a @ b.com", ""},
	},
	mask.DetectUSSSN: {
		{"123-45-6789", "123-45-6789"},
		{"ssn 123 45 6789", "123 45 6789"},
		{"SSN:234-56-7890;", "234-56-7890"},
		{"000-12-3456", ""},
		{"666-12-3456", ""},
		{"900-12-3456", ""},
		{"123-00-4567", ""},
		{"123-45-0000", ""},
		{"123-45 6789", ""},
		{"1123-45-6789", ""},
		{"123456789", ""},
	},
	mask.DetectIBAN: {
		{"DE89370400440532013000", "DE89370400440532013000"},
		{"iban: DE89 3704 0044 0532 0130 00", "3704 0044 0532 0130"},
		{"GB82WEST12345698765432", "GB82WEST12345698765432"},
		{"gb82west12345698765432", "gb82west12345698765432"},
		{"NO9386011117947", "NO9386011117947"},
		{"DE89370400440532013001", ""},  // mod 97
		{"XX89370400440532013000", ""},  // no such country
		{"DE8937040044053201300", ""},   // short
		{"DE893704004405320130000", ""}, // long
	},
	mask.DetectAWSAccessKey: {
		{"AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
		{"key=ASIAY34FZKBOKMUTVV7A;", "ASIAY34FZKBOKMUTVV7A"},
		{"AKIAIOSFODNN7EXAMPL", ""},
		{"AKIAIOSFODNN7EXAMPLEX", ""},
		{"AKIAiosfodnn7example", ""},
		{"AKIBIOSFODNN7EXAMPLE", ""},
	},
	mask.DetectAWSSecretKey: {
		{"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"Zx9Qm2Lp7Rt4Vb8Nc1Kd5Hg3Jf6Ws0Ye2Ua7Io4P", "Zx9Qm2Lp7Rt4Vb8Nc1Kd5Hg3Jf6Ws0Ye2Ua7Io4P"},
		{"commit da39a3ee5e6b4b0d3255bfef95601890afd80709", ""},
		{"aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYX", ""}, // 41
		{"aaaaaaaaaaaaaaaaaaaaBBBBBBBBBBBBBBBBBBBB", ""},      // not random, no hint
	},
	mask.DetectJWT: {
		{"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "eyJzdWIiOiIxMjM0NTY3ODkwIn0"},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "eyJzdWIiOiJ4In0"},
		{"eyJhbGciOiJIUzI1NiJ9", ""},
		{"eyJ.x.y", ""},
	},
	mask.DetectPEMPrivateKey: {
		{"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1x\n-----END RSA PRIVATE KEY-----\n", "MIIEowIBAAKCAQEA1x"},
		{"key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "b3BlbnNzaC1rZXktdjEAAAAA"},
		{"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----", "MC4CAQAwBQYDK2VwBCIEI"},
		{"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----", ""},
		{"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----", ""},
	},
	mask.DetectTokenPrefix: {
		{"GITHUB_TOKEN=ghp_1234567890abcdefghijABCDEFGHIJ123456", "1234567890abcdefghijABCDEFGHIJ123456"},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"},
		{"xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "123456789012-1234567890123-AbCdEfGhIjKlMnOp"},
		{"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc"},
		{"glpat-abcdefghij0123456789", "abcdefghij0123456789"},
		{"AIzaSyD-1234567890abcdefghijklmnopqrstu", "SyD-1234567890abcdefghijklmnopqrstu"},
		{"ghp_short", ""},
		{"sk_live_abc", ""},
		{"my-github-token", ""},
		{"AIza", ""},
	},
}

func TestDetectors(t *testing.T) {
	t.Parallel()
	if len(detectorCases) != len(mask.DetectorNames()) {
		t.Fatalf("cases for %d detectors, %d exist", len(detectorCases), len(mask.DetectorNames()))
	}
	for name, cases := range detectorCases {
		m, err := mask.New(mask.Config{Detectors: []string{name}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(name+"/"+c.in, func(t *testing.T) {
				in := []byte(c.in)
				out := m.Text(in)
				if c.secret == "" {
					if !bytes.Equal(out, in) {
						t.Fatalf("near miss masked: %q -> %q", c.in, out)
					}
					return
				}
				if !strings.Contains(c.in, c.secret) {
					t.Fatalf("bad case: %q not in %q", c.secret, c.in)
				}
				if bytes.Contains(out, []byte(c.secret)) {
					t.Fatalf("secret survived: %q -> %q", c.in, out)
				}
				if len(out) != len(in) {
					t.Fatalf("full style changed the length: %q -> %q", c.in, out)
				}
				if m.Counts()[name] == 0 {
					t.Fatalf("count for %s not incremented", name)
				}
			})
		}
	}
}

// Every detector's positives stay masked when all detectors run together (overlapping
// matches are merged, never unmasked).
func TestAllDetectorsTogether(t *testing.T) {
	t.Parallel()
	m, err := mask.New(mask.Config{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, cases := range detectorCases {
		for _, c := range cases {
			if c.secret != "" {
				all = append(all, c.in)
			}
		}
	}
	joined := strings.Join(all, "\n")
	out := string(m.Text([]byte(joined)))
	for _, cases := range detectorCases {
		for _, c := range cases {
			if c.secret != "" && strings.Contains(out, c.secret) {
				t.Errorf("secret %q survived in the joined text", c.secret)
			}
		}
	}
}

func TestTextCleanInputIsNotCopied(t *testing.T) {
	m, err := mask.New(mask.Config{Detectors: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"id": 42, "name": "Alice", "ts": "2024-01-01T10:00:00Z", "memo": "nothing to see here"}`)
	if out := m.Text(in); &out[0] != &in[0] {
		t.Fatal("clean text was copied")
	}
	if n := testing.AllocsPerRun(100, func() { m.Text(in) }); n != 0 {
		t.Fatalf("%v allocations on clean text", n)
	}
}
