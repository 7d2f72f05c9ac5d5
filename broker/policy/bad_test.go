package policy_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/broker/policy"
)

// TestBadPolicies loads every testdata/bad/*.yaml; each file starts with one
// "# want: file:line:col: message" line per error expected, in order.
func TestBadPolicies(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad policies: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			want := wantLine(t, f)
			_, err := policy.Load(f)
			if err == nil {
				t.Fatal("policy loaded")
			}
			if err.Error() != want {
				t.Errorf("error:\n got: %s\nwant: %s", err, want)
			}
		})
	}
}

func wantLine(t *testing.T, path string) string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var want []string
	for sc.Scan() && strings.HasPrefix(sc.Text(), "# want: ") {
		want = append(want, strings.TrimPrefix(sc.Text(), "# want: "))
	}
	if len(want) == 0 {
		t.Fatalf("%s: first line must be '# want: file:line:col: message'", path)
	}
	return strings.Join(want, "\n")
}
