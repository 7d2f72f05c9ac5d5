package config_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/engine/config"
	"github.com/jitgate/jitgate/ephemeral/mask"
)

// Each read counts one verdict, and each value masked counts once under the
// reason it was masked for; revealed values count nothing.
func TestCountersFollowReads(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		reveal    []string
		detectors []string
		want      map[string]uint64 // after reading flags/* twice
	}{
		{"detectors", nil, []string{"credit_card", "aws_access_key"}, map[string]uint64{
			// api_token and public_key_id by name, cache_seed by entropy, the
			// db_url password, the AWS key under flags/color, the card in the banner.
			config.MaskSecretName: 4, config.MaskEntropy: 2, config.MaskURLPassword: 2,
			mask.DetectAWSAccessKey: 2, mask.DetectCreditCard: 2,
		}},
		{"revealed", []string{"flags/color", "flags/public_*"}, []string{"credit_card", "aws_access_key"}, map[string]uint64{
			config.MaskSecretName: 2, config.MaskEntropy: 2, config.MaskURLPassword: 2,
			mask.DetectAWSAccessKey: 0, mask.DetectCreditCard: 2,
		}},
		{"no masker", nil, nil, map[string]uint64{
			config.MaskSecretName: 4, config.MaskEntropy: 2, config.MaskURLPassword: 2,
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newEngine(t, []string{"flags/*", "db/host"}, c.reveal, c.detectors)
			if a, b := f.eng.Verdicts(); a != 0 || b != 0 {
				t.Fatalf("fresh engine: verdicts %d/%d", a, b)
			}
			var noticed uint64
			for range 2 {
				res, err := f.eng.Exec(t.Context(), "flags/*")
				if err != nil {
					t.Fatal(err)
				}
				noticed += maskedNotice(t, res.Notices)
			}
			for _, op := range []string{"admin/root_password", "flags/../admin/x", "db/*word", "db/host"} {
				_, _ = f.eng.Exec(t.Context(), op)
			}
			if a, b := f.eng.Verdicts(); a != 3 || b != 3 {
				t.Errorf("verdicts %d allowed %d blocked, want 3 and 3", a, b)
			}
			got := f.eng.MaskCounts()
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("MaskCounts = %v\nwant        %v", got, c.want)
			}
			// Every masked value here is masked for one reason: the counts
			// add up to what the reads' notices said.
			var sum uint64
			for _, n := range got {
				sum += n
			}
			if sum != noticed {
				t.Errorf("counts add up to %d, the notices to %d", sum, noticed)
			}
		})
	}
}

// maskedNotice parses "N of M values masked".
func maskedNotice(t *testing.T, notices []string) uint64 {
	t.Helper()
	if len(notices) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(strings.Fields(notices[0])[0], 10, 64)
	if err != nil {
		t.Fatalf("notice %q", notices[0])
	}
	return n
}

// A value whose key names a secret and which looks random counts once, by name.
func TestWholeRedactionCountsOnce(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/*"}, nil, []string{"all"})
	if v, masked := f.eng.Value("flags/api_token", "q8Zr2Lk9Vx4Tp7Mn3Bw6Yh1D"); !masked || v != "********" {
		t.Fatalf("Value = %q, %v", v, masked)
	}
	got := f.eng.MaskCounts()
	if got[config.MaskSecretName] != 1 || got[config.MaskEntropy] != 0 || got["column"] != 0 {
		t.Fatalf("MaskCounts = %v, want secret_name 1 only", got)
	}
	for k, n := range got {
		if k != config.MaskSecretName && n != 0 {
			t.Errorf("%s counted %d", k, n)
		}
	}
}

// Several URLs with passwords in one value count one each.
func TestURLPasswordsCountEach(t *testing.T) {
	t.Parallel()
	f := newEngine(t, []string{"flags/*"}, nil, nil)
	v, masked := f.eng.Value("flags/mirrors", "https://a:pw1@one.example/ https://b@two.example/ ftp://c:pw3@three.example")
	if !masked || strings.Contains(v, "pw1") || strings.Contains(v, "pw3") {
		t.Fatalf("Value = %q, %v", v, masked)
	}
	if n := f.eng.MaskCounts()[config.MaskURLPassword]; n != 2 {
		t.Fatalf("url_password counted %d, want 2", n)
	}
}
