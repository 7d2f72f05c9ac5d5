package record_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record"
)

func TestOpenWritesHeaderAndStartedDurably(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := record.Open(dir, header("g1"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Path() != filepath.Join(dir, "g1"+record.Ext) {
		t.Fatalf("path %q", r.Path())
	}
	st, err := os.Stat(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	// Before any Flush or Close the header and "started" are already on disk.
	h, evs, err := record.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if h.GrantID != "g1" || h.Format != record.Format || h.Version != "v0.1.0" || h.LeaseID != "lease-1" || !h.Started.Equal(header("g1").Started) {
		t.Fatalf("header %+v", h)
	}
	if len(evs) != 1 || evs[0].Type != record.Started {
		t.Fatalf("events %+v, want one started", evs)
	}
}

func TestRoundTripAndRowCap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := record.Open(dir, header("g2"))
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	v := "****1111"
	rows := make([][]*string, record.MaxRowsPerEvent+50)
	for i := range rows {
		rows[i] = []*string{&v, nil}
	}
	in := []record.Event{
		{Type: record.Query, Conn: 1, Statement: "SELECT card FROM users"},
		{Type: record.Verdict, Conn: 1, Allowed: &yes},
		{Type: record.Rows, Conn: 1, Columns: []string{"card", "note"}, Rows: rows, RowCount: 5000},
		{Type: record.Result, Conn: 1, Tag: "SELECT 5000"},
		{Type: record.Query, Conn: 2, Statement: "DELETE FROM orders"},
		{Type: record.Verdict, Conn: 2, Allowed: &no, Reason: "write statement on a read grant"},
		{Type: record.Error, Conn: 2, Error: "42501 jitgate: blocked"},
	}
	for _, ev := range in {
		if err := r.Write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.Write(record.Event{Type: record.Query}); !errors.Is(err, record.ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	_, evs, err := record.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(in)+2 || evs[0].Type != record.Started || evs[len(evs)-1].Type != record.Ended {
		t.Fatalf("got %d events: %+v", len(evs), evs)
	}
	got := evs[3]
	if len(got.Rows) != record.MaxRowsPerEvent || got.RowCount != 5000 || *got.Rows[0][0] != v || got.Rows[0][1] != nil {
		t.Fatalf("rows event: %d rows, count %d", len(got.Rows), got.RowCount)
	}
	if evs[6].Allowed == nil || *evs[6].Allowed || evs[6].Reason == "" {
		t.Fatalf("verdict %+v", evs[6])
	}
	for _, ev := range evs {
		if ev.Time.IsZero() {
			t.Fatalf("event without time: %+v", ev)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := record.Open(dir, header("dup")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		dir  string
		id   string
		want string
	}{
		{"existing recording is never overwritten", dir, "dup", "exists"},
		{"path in grant id", dir, "../x", "unusable grant id"},
		{"empty grant id", dir, "", "unusable grant id"},
		{"no dir", "", "g", "no directory"},
		{"unwritable dir", "/proc/jitgate-no", "g", "record: open"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := record.Open(c.dir, header(c.id))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
}

func TestWriteErrorIsSticky(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r, err := record.Open(dir, header("g3"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Write(record.Event{Type: "bogus"}); err == nil {
		t.Fatal("unknown event type accepted")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 70<<10) // larger than the write buffer: forces a write
	// A closed file descriptor stands in for a failing disk.
	r, err = record.Open(dir, header("g4"))
	if err != nil {
		t.Fatal(err)
	}
	record.CloseFileForTest(r)
	var first error
	for i := 0; i < 3 && first == nil; i++ {
		first = r.Write(record.Event{Type: record.Query, Statement: big})
	}
	if first == nil {
		first = r.Flush()
	}
	if first == nil {
		t.Fatal("no error from a recorder whose file is closed")
	}
	if err := r.Write(record.Event{Type: record.Query}); err == nil || err.Error() != first.Error() {
		t.Fatalf("second write: %v, want the first error %v", err, first)
	}
	if err := r.Flush(); err == nil {
		t.Fatal("Flush after error returned nil")
	}
	if err := r.Close(); err == nil {
		t.Fatal("Close after error returned nil")
	}
}

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	r, err := record.Open(t.TempDir(), header("g5"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for c := 1; c <= 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := r.Write(record.Event{Type: record.Query, Conn: c, Statement: fmt.Sprintf("SELECT %d", i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	_, evs, err := record.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 8*200+2 {
		t.Fatalf("%d events, want %d", len(evs), 8*200+2)
	}
}

func TestReadFileIsStrict(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := `{"format":"jitgate-recording/v1","grant_id":"g","identity":"i","target":"t","rule":"r","mode":"exec","started":"2026-01-01T00:00:00Z"}` + "\n"
	cases := map[string]string{
		"empty":         "",
		"bad format":    strings.Replace(good, "v1", "v9", 1),
		"unknown field": good + `{"time":"2026-01-01T00:00:00Z","type":"query","evil":1}` + "\n",
		"unknown type":  good + `{"time":"2026-01-01T00:00:00Z","type":"shell"}` + "\n",
		"truncated":     good + `{"time":"2026-01-01T00:00:00Z","ty`,
	}
	for name, body := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := record.ReadFile(p); err == nil {
			t.Errorf("%s: ReadFile accepted it", name)
		}
	}
}
