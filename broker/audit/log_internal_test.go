package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// After a failed write the log refuses every later append with the first error,
// and what is on disk still verifies.
func TestWriteFailureIsSticky(t *testing.T) {
	t.Parallel()
	for _, mode := range []SyncMode{SyncEach, SyncGroup} {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		l, err := Open(path, Options{Sync: mode})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Append(t.Context(), Event{Type: GrantRequested, GrantID: "g_1"}); err != nil {
			t.Fatal(err)
		}
		_ = l.f.Close() // the disk goes away
		_, err1 := l.Append(t.Context(), Event{Type: GrantApproved, GrantID: "g_1"})
		_, err2 := l.Append(t.Context(), Event{Type: GrantApproved, GrantID: "g_1"})
		if err1 == nil || err2 == nil || err1.Error() != err2.Error() || !strings.Contains(err1.Error(), "refuses further appends") {
			t.Errorf("%s: appends after a write failure: %v / %v", mode, err1, err2)
		}
		_ = l.Close()
		b, _ := os.ReadFile(path)
		if n, err := Verify(strings.NewReader(string(b))); n != 1 || err != nil {
			t.Errorf("%s: Verify = %d, %v", mode, n, err)
		}
	}
}
