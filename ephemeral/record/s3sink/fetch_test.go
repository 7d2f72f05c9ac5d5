package s3sink_test

import (
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
