package s3sink_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record/s3sink"
)

func TestParseURI(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		uri, bucket, key string
		ok               bool
	}{
		{"s3://b/recordings/g1.jgr", "b", "recordings/g1.jgr", true},
		{"s3://b/g1.jgr", "b", "g1.jgr", true},
		{"s3://b/", "", "", false},
		{"s3://b", "", "", false},
		{"s3:///g1.jgr", "", "", false},
		{"https://b/g1.jgr", "", "", false},
		{"s3://b/../g1.jgr", "", "", false},
		{"s3://b/a//g1.jgr", "", "", false},
		{"s3://b/g1.jgr?versionId=x", "", "", false},
		{"s3://user@b/g1.jgr", "", "", false},
		{"s3://b/g 1.jgr", "", "", false},
	} {
		b, k, err := s3sink.ParseURI(c.uri)
		if (err == nil) != c.ok || b != c.bucket || k != c.key {
			t.Errorf("ParseURI(%q) = %q, %q, %v; want %q, %q, ok=%v", c.uri, b, k, err, c.bucket, c.key, c.ok)
		}
	}
}

func TestFetchRefusesNonRecordings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, shared)
	for _, uri := range []string{"s3://" + e.bucket + "/recordings/notes.txt", "s3://" + e.bucket + "/recordings/.jgr", "s3://" + e.bucket + "/recordings/missing.jgr"} {
		if _, err := s3sink.Fetch(t.Context(), e.client, uri, t.TempDir()); err == nil {
			t.Errorf("Fetch(%s) succeeded", uri)
		}
	}
}

// FuzzParseURI: whatever ParseURI accepts names a bucket and a key of
// single-slash-separated segments without "." or "..".
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"s3://b/recordings/g1.jgr", "s3://b/../x", "s3://b//x", "s3://b/x?y", "s3:/b/x", "s3://b/%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		b, k, err := s3sink.ParseURI(uri)
		if err != nil {
			return
		}
		if b == "" || k == "" || strings.HasPrefix(k, "/") || strings.HasSuffix(k, "/") {
			t.Fatalf("ParseURI(%q) = %q, %q", uri, b, k)
		}
		for _, seg := range strings.Split(k, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ParseURI(%q) key %q has segment %q", uri, k, seg)
			}
		}
	})
}
