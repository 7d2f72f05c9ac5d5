package zipbuild_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/jitgate/jitgate/functions/internal/zipbuild"
	"github.com/jitgate/jitgate/test/lambdatest"
)

// TestZipRunsUnderTheEmulator builds the runner's deployment package exactly
// as `make functions` does, checks its layout and glibc floor, and proves the
// bootstrap from inside the zip runs under the Lambda Runtime Interface
// Emulator: it answers an invocation (refusing its made-up token) instead of
// failing to start.
func TestZipRunsUnderTheEmulator(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("functions are built for linux")
	}
	root, err := lambdatest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	arts, err := zipbuild.Build(t.Context(), zipbuild.Config{ModuleRoot: root, Out: out, Functions: []string{"runner"}, Arch: runtime.GOARCH})
	if err != nil {
		t.Fatal(err)
	}
	a := arts[0]
	if a.Zip != filepath.Join(out, "runner.zip") || a.Size == 0 || len(a.SHA256) != 44 {
		t.Errorf("artifact %+v", a)
	}
	if a.Glibc == "" || strings.Compare(a.Glibc, "2.0") < 0 {
		t.Errorf("glibc floor %q: the runner is cgo (pg_query) and must link glibc dynamically", a.Glibc)
	}
	zr, err := zip.OpenReader(a.Zip)
	if err != nil {
		t.Fatal(err)
	}
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" || zr.File[0].Mode().Perm() != 0o755 {
		t.Errorf("zip entries: %d, first %q mode %v; want one executable bootstrap", len(zr.File), zr.File[0].Name, zr.File[0].Mode())
	}
	zr.Close()

	bin, err := zipbuild.Unzip(a.Zip, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fn := lambdatest.Start(t, lambdatest.Config{Binary: bin, Env: []string{
		"JITGATE_TABLE=t", "JITGATE_BUCKET=b", "VAULT_ADDR=http://127.0.0.1:1",
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x", "AWS_ENDPOINT_URL=http://127.0.0.1:1",
	}})
	resp, err := fn.Invoke(t.Context(), []byte(`{"grant_id":"g_zip","wrap_token":"hvs.x"}`))
	if err != nil {
		t.Fatalf("invoke the zipped bootstrap: %v\n%s", err, fn.Output())
	}
	var r struct {
		Statuses []struct{ Type, Code string }
	}
	if err := json.Unmarshal(resp, &r); err != nil || len(r.Statuses) != 2 || r.Statuses[0].Type != "error" || r.Statuses[0].Code != "bad_spec" {
		t.Errorf("answer %s", resp)
	}
}

func TestBuildIsReproducible(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(dir, "a.zip"), filepath.Join(dir, "b.zip")
	for _, z := range []string{a, b} {
		if err := zipbuild.Zip(bin, z); err != nil {
			t.Fatal(err)
		}
	}
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(b)
	if !bytes.Equal(x, y) {
		t.Error("two zips of the same binary differ")
	}
	if _, err := zipbuild.Unzip(a, t.TempDir()); err != nil {
		t.Errorf("Unzip: %v", err)
	}
}

func TestGlibcNeededOfThisTestBinary(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A cgo-free Go test binary needs no glibc; whatever it says must parse.
	if _, err := zipbuild.GlibcNeeded(exe); err != nil {
		t.Errorf("GlibcNeeded(%s): %v", exe, err)
	}
	if _, err := zipbuild.GlibcNeeded("zipbuild_test.go"); err == nil {
		t.Error("GlibcNeeded accepted a file that is not ELF")
	}
}
