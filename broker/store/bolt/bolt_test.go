package bolt_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/jitgate/jitgate/broker/grant"
	"github.com/jitgate/jitgate/broker/store/bolt"
	"github.com/jitgate/jitgate/broker/store/storetest"
	"github.com/jitgate/jitgate/ephemeral/spec"
)

func open(t testing.TB, path string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(path, bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) grant.Store {
		return open(t, filepath.Join(t.TempDir(), "grants.db"))
	}, storetest.WithReopen(func(t *testing.T, old grant.Store) grant.Store {
		return open(t, old.(*bolt.Store).Path())
	}))
}

func TestSecondOpenTimesOutOnTheLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "grants.db")
	s := open(t, path)
	defer s.Close()
	_, err := bolt.Open(path, bolt.Options{Timeout: 50 * time.Millisecond})
	if !errors.Is(err, bbolt.ErrTimeout) {
		t.Fatalf("second Open: %v, want a lock timeout", err)
	}
}

func TestFileIsPrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "grants.db")
	s := open(t, path)
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("store file mode %v is readable by others", fi.Mode().Perm())
	}
}

func TestOpenRefusesOtherSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "grants.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("2"))
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bolt.Open(path, bolt.Options{}); err == nil || !strings.Contains(err.Error(), `schema "2" is not "1"`) {
		t.Fatalf("Open: %v, want a schema refusal", err)
	}
	if _, err := bolt.Open("", bolt.Options{}); err == nil {
		t.Error("Open with an empty path succeeded")
	}
}

// A record edited or corrupted on disk is an error, never a zero grant.
func TestCorruptRecordIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "grants.db")
	s := open(t, path)
	g := &grant.Grant{ID: grant.NewID(), Requester: "okta|a", Target: "db", Protocol: spec.Postgres, Mode: spec.Session, State: grant.Pending}
	if err := s.Create(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	for _, tc := range []struct{ name, val, want string }{
		{"not json", "{", "decode"},
		{"unknown state", `{"id":"` + g.ID + `","state":"superuser"}`, "unknown state"},
		{"missing state", `{"id":"` + g.ID + `"}`, "inconsistent"},
		{"other id", `{"id":"g_other","state":"pending"}`, "inconsistent"},
	} {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("grants")).Put([]byte(g.ID), []byte(tc.val)) })
		_ = db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s := open(t, path)
		_, gerr := s.Get(t.Context(), g.ID)
		_, lerr := s.List(t.Context(), grant.Filter{})
		called := false
		_, uerr := s.Update(t.Context(), g.ID, func(*grant.Grant) error { called = true; return nil })
		_ = s.Close()
		for op, err := range map[string]error{"Get": gerr, "List": lerr, "Update": uerr} {
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, grant.ErrNotFound) {
				t.Errorf("%s: %s err %v, want %q", tc.name, op, err, tc.want)
			}
		}
		if called {
			t.Errorf("%s: Update called fn on a corrupt record", tc.name)
		}
	}
}

func TestClockAndCloseTwice(t *testing.T) {
	t.Parallel()
	at := time.Date(2027, 2, 3, 4, 5, 6, 0, time.FixedZone("x", 3600))
	s, err := bolt.Open(filepath.Join(t.TempDir(), "grants.db"), bolt.Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	g := &grant.Grant{ID: grant.NewID(), Requester: "okta|a", State: grant.Denied}
	if err := s.Create(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	if !g.CreatedAt.Equal(at) || !g.UpdatedAt.Equal(at) || g.CreatedAt.Location() != time.UTC {
		t.Errorf("times %v %v, want %v in UTC", g.CreatedAt, g.UpdatedAt, at)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// BenchmarkUpdate measures one compare-and-swap Update (read, decode, fn, check,
// encode, write, fsync) against the baseline of a bare bbolt write transaction
// putting the same bytes: the difference is this package's overhead.
func BenchmarkUpdate(b *testing.B) {
	b.Run("baseline-bbolt-put", func(b *testing.B) {
		db, err := bbolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		val := []byte(strings.Repeat("x", 900))
		for b.Loop() {
			if err := db.Update(func(tx *bbolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("g"))
				if err != nil {
					return err
				}
				return bk.Put([]byte("g_0123456789abcdefghijklmnop"), val)
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store-update", func(b *testing.B) {
		s := open(b, filepath.Join(b.TempDir(), "grants.db"))
		defer s.Close()
		op := "UPDATE accounts SET plan = 'pro' WHERE id = 7"
		g := &grant.Grant{ID: grant.NewID(), Requester: "okta|a", Target: "db", Protocol: spec.Postgres, Mode: spec.Exec,
			Operation: op, OperationHash: grant.HashOperation(op), State: grant.Active}
		g.State = grant.Approved
		if err := s.Create(b.Context(), g); err != nil {
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			i++
			if _, err := s.Update(b.Context(), g.ID, func(g *grant.Grant) error {
				g.ProxyAddr = "127.0.0.1:" + string(rune('0'+i%10))
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
