package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/jitgate/jitgate/broker/audit"
)

// clock is a deterministic, concurrency-safe clock that ticks one millisecond per call.
type clock struct{ n atomic.Int64 }

func (c *clock) now() time.Time {
	return time.Date(2026, 6, 1, 9, 0, 0, 0, time.UTC).Add(time.Duration(c.n.Add(1)) * time.Millisecond)
}

func openLog(t testing.TB, path string, mode audit.SyncMode) *audit.Log {
	t.Helper()
	var c clock
	l, err := audit.Open(path, audit.Options{Now: c.now, Sync: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// sample returns the i-th event of a varied sequence that uses every field.
func sample(i int) audit.Event {
	types := audit.Types()
	return audit.Event{
		Type:        types[i%len(types)],
		GrantID:     fmt.Sprintf("g_%03d", i%3),
		Actor:       "https://issuer.example|user" + fmt.Sprint(i),
		Target:      "prod-db",
		Rule:        "ci-writes",
		Reasons:     []string{"needs approval", fmt.Sprintf("reason %d", i)},
		LeaseID:     "database/creds/rw/" + fmt.Sprint(i),
		Statement:   fmt.Sprintf("SELECT '<&>' || %d; -- \u2028 é", i),
		Detail:      "detail",
		StageMillis: map[string]float64{"policy": 0.25, "credential": float64(i) + 0.5},
	}
}

// writeLog appends n sample events and returns the file's bytes split in lines
// (each without its newline) and the log's head.
func writeLog(t *testing.T, n int) (lines [][]byte, headSeq int64, headHash string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.SyncEach)
	for i := 0; i < n; i++ {
		if _, err := l.Append(t.Context(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	headSeq, headHash = l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines = bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(lines) != n {
		t.Fatalf("%d lines, want %d", len(lines), n)
	}
	return lines, headSeq, headHash
}

func join(lines [][]byte) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func clone(lines [][]byte) [][]byte {
	out := make([][]byte, len(lines))
	for i, l := range lines {
		out[i] = append([]byte(nil), l...)
	}
	return out
}

// wantBad asserts that data fails verification at line with a reason containing reason.
func wantBad(t *testing.T, what string, data []byte, line int, reason string) {
	t.Helper()
	_, err := audit.Verify(bytes.NewReader(data))
	var ve *audit.VerifyError
	if !errors.As(err, &ve) {
		t.Errorf("%s: Verify err %v, want a *VerifyError at line %d", what, err, line)
		return
	}
	if ve.Line != line || !strings.Contains(ve.Reason, reason) {
		t.Errorf("%s: got %q, want line %d: %q", what, err, line, reason)
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("audit: line %d: ", line)) {
		t.Errorf("%s: error text %q does not name the line", what, err)
	}
}

func TestChainVerifies(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.SyncEach)
	if seq, hash := l.Head(); seq != 0 || hash != "" {
		t.Errorf("empty head = %d %q", seq, hash)
	}
	var written []audit.Event
	prev := ""
	for i := 0; i < 12; i++ {
		in := sample(i)
		in.Seq, in.Prev, in.Hash = 99, "forged", "forged" // Append owns these
		ev, err := l.Append(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Seq != int64(i+1) || ev.Prev != prev || len(ev.Hash) != 64 || ev.Time.Location() != time.UTC || ev.Time.IsZero() {
			t.Fatalf("event %d: seq %d prev %q hash %q time %v", i, ev.Seq, ev.Prev, ev.Hash, ev.Time)
		}
		prev = ev.Hash
		written = append(written, ev)
	}
	if seq, hash := l.Head(); seq != 12 || hash != prev {
		t.Errorf("Head = %d %s, want 12 %s", seq, hash, prev)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := audit.Verify(bytes.NewReader(b))
	if n != 12 || err != nil {
		t.Fatalf("Verify = %d, %v", n, err)
	}
	all, err := audit.Tail(bytes.NewReader(b), "")
	if err != nil || len(all) != 12 {
		t.Fatalf("Tail(all) = %d, %v", len(all), err)
	}
	for i := range all {
		w, _ := json.Marshal(written[i])
		g, _ := json.Marshal(all[i])
		if !bytes.Equal(w, g) {
			t.Errorf("event %d read back differs:\n%s\n%s", i, g, w)
		}
	}
	if n, err := audit.Verify(strings.NewReader("")); n != 0 || err != nil {
		t.Errorf("empty log: %d, %v", n, err)
	}
}

// Editing any field of any line names that line.
func TestEditAnyFieldNamesThatLine(t *testing.T) {
	t.Parallel()
	lines, _, _ := writeLog(t, 6)
	edits := map[string]func(ev *audit.Event){
		"seq":  func(ev *audit.Event) { ev.Seq += 1 },
		"time": func(ev *audit.Event) { ev.Time = ev.Time.Add(-time.Hour) },
		"type": func(ev *audit.Event) {
			if ev.Type == audit.CommandAllowed {
				ev.Type = audit.CommandBlocked
			} else {
				ev.Type = audit.CommandAllowed
			}
		},
		"grant_id":  func(ev *audit.Event) { ev.GrantID = "g_other" },
		"actor":     func(ev *audit.Event) { ev.Actor = "okta|mallory" },
		"target":    func(ev *audit.Event) { ev.Target = "staging" },
		"rule":      func(ev *audit.Event) { ev.Rule = "" },
		"reasons":   func(ev *audit.Event) { ev.Reasons = ev.Reasons[:1] },
		"lease_id":  func(ev *audit.Event) { ev.LeaseID = "none" },
		"statement": func(ev *audit.Event) { ev.Statement = "SELECT 1" },
		"detail":    func(ev *audit.Event) { ev.Detail = "nothing happened" },
		"stage_ms":  func(ev *audit.Event) { ev.StageMillis["policy"] = 0.26 },
		"prev":      func(ev *audit.Event) { ev.Prev = strings.Repeat("0", 64) },
		"hash":      func(ev *audit.Event) { ev.Hash = strings.Repeat("f", 64) },
	}
	for i := range lines {
		for field, edit := range edits {
			var ev audit.Event
			if err := json.Unmarshal(lines[i], &ev); err != nil {
				t.Fatal(err)
			}
			edit(&ev)
			edited, err := json.Marshal(ev) // canonical, keeps the old hash
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(edited, lines[i]) {
				t.Fatalf("edit of %s on line %d changed nothing", field, i+1)
			}
			ls := clone(lines)
			ls[i] = edited
			wantBad(t, fmt.Sprintf("edit %s line %d", field, i+1), join(ls), i+1, "hash mismatch (edited?)")
		}
	}
}

// Edits that leave the parsed event unchanged still change the line's bytes.
func TestNonCanonicalEditsNameThatLine(t *testing.T) {
	t.Parallel()
	lines, _, _ := writeLog(t, 4)
	const i = 2
	edits := []struct {
		name   string
		edit   func(l []byte) []byte
		reason string
	}{
		{"space", func(l []byte) []byte { return bytes.Replace(l, []byte(`,"type"`), []byte(`, "type"`), 1) }, "not in canonical form"},
		{"key case", func(l []byte) []byte { return bytes.Replace(l, []byte(`"actor"`), []byte(`"Actor"`), 1) }, "not in canonical form"},
		{"duplicate key", func(l []byte) []byte {
			return bytes.Replace(l, []byte(`{"seq":3,`), []byte(`{"seq":3,"actor":"okta|mallory",`), 1)
		}, "not in canonical form"},
		{"unknown key", func(l []byte) []byte { return bytes.Replace(l, []byte(`{`), []byte(`{"admin":true,`), 1) }, "not a valid event"},
		{"escaped char", func(l []byte) []byte { return bytes.Replace(l, []byte(`\u003c`), []byte(`<`), 1) }, "not in canonical form"},
		{"trailing data", func(l []byte) []byte { return append(append([]byte(nil), l...), ` {}`...) }, "trailing data"},
		{"not json", func(l []byte) []byte { return l[:len(l)/2] }, "not a valid event"},
		{"empty", func(l []byte) []byte { return nil }, "empty line"},
		{"crlf", func(l []byte) []byte { return append(append([]byte(nil), l...), '\r') }, "not in canonical form"},
	}
	for _, tc := range edits {
		ls := clone(lines)
		ls[i] = tc.edit(ls[i])
		wantBad(t, tc.name, join(ls), i+1, tc.reason)
	}
}

func TestStructuralTampering(t *testing.T) {
	t.Parallel()
	const n = 6
	lines, _, _ := writeLog(t, n)
	for i := 0; i < n-1; i++ {
		// Deleting line i+1 names the line after it (now at position i+1).
		ls := append(clone(lines[:i]), clone(lines[i+1:])...)
		wantBad(t, fmt.Sprintf("delete line %d", i+1), join(ls), i+1, fmt.Sprintf("seq %d follows %d (missing line)", i+2, i))

		// Swapping lines i+1 and i+2 names the first of them.
		ls = clone(lines)
		ls[i], ls[i+1] = ls[i+1], ls[i]
		wantBad(t, fmt.Sprintf("swap %d,%d", i+1, i+2), join(ls), i+1, fmt.Sprintf("seq %d follows %d", i+2, i))

		// A duplicated line names the copy.
		ls = append(clone(lines[:i+1]), clone(lines[i:])...)
		wantBad(t, fmt.Sprintf("duplicate %d", i+1), join(ls), i+2, fmt.Sprintf("seq %d follows %d (duplicated or reordered line)", i+1, i+1))
	}
	// Moving the last line to the front.
	ls := append([][]byte{lines[n-1]}, clone(lines[:n-1])...)
	wantBad(t, "last first", join(ls), 1, fmt.Sprintf("seq %d follows 0 (missing line)", n))

	// A torn last line.
	data := join(lines)
	wantBad(t, "torn last line", data[:len(data)-10], n, "incomplete last line")
	wantBad(t, "missing final newline", data[:len(data)-1], n, "incomplete last line")

	// A blank line between two lines.
	ls = clone(lines)
	ls = append(ls[:3], append([][]byte{{}}, ls[3:]...)...)
	wantBad(t, "blank line", join(ls), 4, "empty line")
}

// Someone who re-seals an edited line breaks the link to the next line; someone
// who re-seals every line after it passes Verify, and only the external head
// catches it.
func TestRewriteNeedsTheHead(t *testing.T) {
	t.Parallel()
	const n = 5
	lines, seq, head := writeLog(t, n)
	reseal := func(ls [][]byte, from int) {
		prev := ""
		if from > 0 {
			var p audit.Event
			_ = json.Unmarshal(ls[from-1], &p)
			prev = p.Hash
		}
		for i := from; i < len(ls); i++ {
			var ev audit.Event
			_ = json.Unmarshal(ls[i], &ev)
			if i == from {
				ev.Actor = "okta|mallory"
			}
			ev.Prev, ev.Hash = prev, ""
			body, _ := json.Marshal(ev)
			ev.Hash = sha(body)
			ls[i], _ = json.Marshal(ev)
			prev = ev.Hash
		}
	}
	// Re-seal line 2 only: line 3 names it.
	ls := clone(lines)
	var ev audit.Event
	_ = json.Unmarshal(ls[1], &ev)
	ev.Actor, ev.Hash = "okta|mallory", ""
	body, _ := json.Marshal(ev)
	ev.Hash = sha(body)
	ls[1], _ = json.Marshal(ev)
	wantBad(t, "reseal one line", join(ls), 3, "prev does not match")

	// Re-seal from line 2 to the end: Verify passes, VerifyHead does not.
	ls = clone(lines)
	reseal(ls, 1)
	if got, err := audit.Verify(bytes.NewReader(join(ls))); err != nil || got != n {
		t.Fatalf("a fully re-sealed log should verify without a head: %d, %v", got, err)
	}
	_, err := audit.VerifyHead(bytes.NewReader(join(ls)), seq, head)
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Line != n || !strings.Contains(ve.Reason, "rewritten?") {
		t.Errorf("VerifyHead on a rewritten log: %v", err)
	}

	// Truncation of the newest line: only the head catches it.
	if got, err := audit.Verify(bytes.NewReader(join(lines[:n-1]))); err != nil || got != n-1 {
		t.Fatalf("truncated log without head: %d, %v", got, err)
	}
	_, err = audit.VerifyHead(bytes.NewReader(join(lines[:n-1])), seq, head)
	if !errors.As(err, &ve) || ve.Line != n || !strings.Contains(ve.Reason, fmt.Sprintf("log ends at seq %d but the recorded head is seq %d (truncated?)", n-1, n)) {
		t.Errorf("VerifyHead on a truncated log: %v", err)
	}

	// The untouched log passes with its head, an older head and the zero head.
	var third audit.Event
	_ = json.Unmarshal(lines[2], &third)
	for _, h := range []struct {
		seq  int64
		hash string
	}{{seq, head}, {3, third.Hash}, {0, ""}} {
		if got, err := audit.VerifyHead(bytes.NewReader(join(lines)), h.seq, h.hash); err != nil || got != n {
			t.Errorf("VerifyHead(%d): %d, %v", h.seq, got, err)
		}
	}
	for _, h := range []struct {
		seq  int64
		hash string
	}{{-1, "x"}, {0, "x"}, {3, ""}} {
		if _, err := audit.VerifyHead(bytes.NewReader(join(lines)), h.seq, h.hash); err == nil {
			t.Errorf("VerifyHead accepted the invalid head (%d, %q)", h.seq, h.hash)
		}
	}
}

func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	for _, mode := range []audit.SyncMode{audit.SyncEach, audit.SyncGroup} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			l := openLog(t, path, mode)
			const workers, each = 8, 25
			var mu sync.Mutex
			seen := map[int64]bool{}
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < each; i++ {
						ev, err := l.Append(t.Context(), sample(w*each+i))
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if seen[ev.Seq] {
							t.Errorf("seq %d handed out twice", ev.Seq)
						}
						seen[ev.Seq] = true
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if n, err := audit.Verify(f); n != workers*each || err != nil || len(seen) != workers*each {
				t.Fatalf("Verify = %d, %v; %d distinct seqs", n, err, len(seen))
			}
		})
	}
}

func TestReopenContinuesTheChain(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	var c clock
	l, err := audit.Open(path, audit.Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	var last audit.Event
	for i := 0; i < 3; i++ {
		if last, err = l.Append(t.Context(), sample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), sample(0)); !errors.Is(err, audit.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	l2, err := audit.Open(path, audit.Options{Now: c.now, Sync: audit.SyncGroup})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if seq, hash := l2.Head(); seq != 3 || hash != last.Hash {
		t.Fatalf("reopened head %d %s, want 3 %s", seq, hash, last.Hash)
	}
	ev, err := l2.Append(t.Context(), sample(3))
	if err != nil || ev.Seq != 4 || ev.Prev != last.Hash {
		t.Fatalf("first append after reopen: seq %d prev %s, %v", ev.Seq, ev.Prev, err)
	}
	if _, err := l2.Append(t.Context(), sample(4)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if n, err := audit.Verify(bytes.NewReader(b)); n != 5 || err != nil {
		t.Fatalf("Verify after reopen = %d, %v", n, err)
	}
}

func TestOpenRefusesABadTail(t *testing.T) {
	t.Parallel()
	lines, _, _ := writeLog(t, 3)
	dir := t.TempDir()
	var edited audit.Event
	_ = json.Unmarshal(lines[2], &edited)
	edited.Actor = "okta|mallory"
	editedLine, _ := json.Marshal(edited)
	long := make([]byte, audit.MaxLineBytes+10)
	for i := range long {
		long[i] = 'x'
	}
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"torn", "last line is incomplete", join(lines)[:len(join(lines))-5]},
		{"edited", "last line: hash mismatch", join(append(clone(lines[:2]), editedLine))},
		{"garbage", "last line: not a valid event", []byte("hello\n")},
		{"too long", "longer than", append(long, '\n')},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, tc.data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := audit.Open(path, audit.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open err %v, want %q", tc.name, err, tc.want)
		}
		if l != nil {
			_ = l.Close()
		}
	}
	if _, err := audit.Open(filepath.Join(dir, "x"), audit.Options{Sync: audit.SyncMode(7)}); err == nil {
		t.Error("Open accepted an unknown sync mode")
	}
}

func TestSecondWriterIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.SyncEach)
	if l2, err := audit.Open(path, audit.Options{}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("second Open: %v", err)
		if l2 != nil {
			_ = l2.Close()
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l3, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = l3.Close()
}

func TestFileIsPrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	openLog(t, path, audit.SyncEach)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("audit file mode %v", fi.Mode().Perm())
	}
}

// Refused events write nothing and leave the chain intact.
func TestAppendRefusals(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l := openLog(t, path, audit.SyncEach)
	if _, err := l.Append(t.Context(), sample(0)); err != nil {
		t.Fatal(err)
	}
	huge := sample(1)
	huge.Statement = strings.Repeat("x", audit.MaxLineBytes)
	nan := sample(2)
	nan.StageMillis = map[string]float64{"run": math.NaN()}
	for _, tc := range []struct {
		name string
		ev   audit.Event
		want string
	}{
		{"unknown type", audit.Event{Type: "grant.approved_by_magic"}, `unknown event type "grant.approved_by_magic"`},
		{"empty type", audit.Event{}, `unknown event type ""`},
		{"too large", huge, "more than"},
		{"NaN timing", nan, "encode"},
	} {
		if _, err := l.Append(t.Context(), tc.ev); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Append(ctx, sample(3)); !errors.Is(err, context.Canceled) {
		t.Error("Append with a canceled context succeeded")
	}
	ev, err := l.Append(t.Context(), sample(4))
	if err != nil || ev.Seq != 2 {
		t.Fatalf("append after refusals: seq %d, %v", ev.Seq, err)
	}
	b, _ := os.ReadFile(path)
	if n, err := audit.Verify(bytes.NewReader(b)); n != 2 || err != nil {
		t.Errorf("Verify = %d, %v", n, err)
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	lines, _, _ := writeLog(t, 9)
	got, err := audit.Tail(bytes.NewReader(join(lines)), "g_001")
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, ev := range got {
		if ev.GrantID != "g_001" {
			t.Errorf("Tail returned an event of %s", ev.GrantID)
		}
		seqs = append(seqs, ev.Seq)
	}
	if fmt.Sprint(seqs) != "[2 5 8]" {
		t.Errorf("Tail seqs %v, want [2 5 8]", seqs)
	}
	if got, err := audit.Tail(bytes.NewReader(join(lines)), "g_none"); err != nil || len(got) != 0 {
		t.Errorf("Tail of an unknown grant: %v, %v", got, err)
	}
	broken := clone(lines)
	broken[4] = bytes.Replace(broken[4], []byte("g_001"), []byte("g_002"), 1)
	got, err = audit.Tail(bytes.NewReader(join(broken)), "g_001")
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Line != 5 || got != nil {
		t.Errorf("Tail of a broken log: %v, %v", got, err)
	}
}

func TestVerifyReadError(t *testing.T) {
	t.Parallel()
	lines, _, _ := writeLog(t, 2)
	boom := errors.New("disk gone")
	r := io.MultiReader(bytes.NewReader(join(lines)), iotest.ErrReader(boom))
	n, err := audit.Verify(r)
	if n != 2 || !errors.Is(err, boom) {
		t.Errorf("Verify with a failing reader: %d, %v", n, err)
	}
}

func FuzzVerify(f *testing.F) {
	var c clock
	dir := f.TempDir()
	l, err := audit.Open(filepath.Join(dir, "seed.jsonl"), audit.Options{Now: c.now})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := l.Append(f.Context(), sample(i)); err != nil {
			f.Fatal(err)
		}
	}
	_ = l.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, "seed.jsonl"))
	f.Add(seed)
	f.Add([]byte(""))
	f.Add([]byte("\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte(`{"seq":1,"time":"2026-01-01T00:00:00Z","type":"grant.requested","hash":"x"}` + "\n"))
	f.Add(seed[:len(seed)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := audit.Verify(bytes.NewReader(data))
		if err == nil {
			if nl := bytes.Count(data, []byte("\n")); n != nl {
				t.Fatalf("verified %d lines, input has %d", n, nl)
			}
			evs, terr := audit.Tail(bytes.NewReader(data), "")
			if terr != nil || len(evs) != n {
				t.Fatalf("Tail disagrees with Verify: %d events, %v", len(evs), terr)
			}
			return
		}
		var ve *audit.VerifyError
		if errors.As(err, &ve) && (ve.Line != n+1 || ve.Reason == "") {
			t.Fatalf("error %v after %d good lines", err, n)
		}
	})
}

// FuzzTamper changes one byte of a valid log: the result never verifies.
func FuzzTamper(f *testing.F) {
	var c clock
	dir := f.TempDir()
	path := filepath.Join(dir, "log.jsonl")
	l, err := audit.Open(path, audit.Options{Now: c.now})
	if err != nil {
		f.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := l.Append(f.Context(), sample(i)); err != nil {
			f.Fatal(err)
		}
	}
	_ = l.Close()
	orig, _ := os.ReadFile(path)
	f.Add(uint32(0), byte('x'))
	f.Add(uint32(len(orig)-2), byte('0'))
	f.Add(uint32(len(orig)/2), byte('\n'))
	f.Fuzz(func(t *testing.T, pos uint32, b byte) {
		data := append([]byte(nil), orig...)
		i := int(pos % uint32(len(data)))
		if data[i] == b {
			return
		}
		data[i] = b
		if n, err := audit.Verify(bytes.NewReader(data)); err == nil {
			t.Fatalf("log with byte %d changed to %q verified (%d lines)", i, b, n)
		}
	})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
