// Package zipbuild builds the Lambda deployment packages of functions/: one
// zip per function holding a single executable named "bootstrap", the layout
// of the provided.al2023 runtime. `make functions` runs it (functions/mkzip);
// Terraform only uploads the zips (there is no archive provider here).
//
// pg_query_go is cgo, so the functions are built with CGO_ENABLED=1 against
// the build host's glibc and linked dynamically. Amazon Linux 2023 ships glibc
// 2.34: Build reads the versioned glibc symbols a binary needs from its ELF
// dynamic section and refuses a binary that needs more than Floor, so a
// package that would fail at cold start ("GLIBC_2.38 not found") never leaves
// the build. Debian 12 (glibc 2.36) produces binaries that need exactly 2.34;
// provided.al2 (glibc 2.26) is not supported. Build on linux for the target
// architecture (cross-compiling cgo needs a cross C toolchain).
//
// Zips are reproducible: fixed timestamps, one entry, mode 0755.
package zipbuild

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Floor is the newest glibc symbol version a function may need: Amazon Linux
// 2023's glibc.
const Floor = "2.34"

// Functions are the packages under functions/ that become zips.
var Functions = []string{"api", "runner", "sweeper"}

// Config says what to build.
type Config struct {
	// ModuleRoot is the directory holding go.mod. Required.
	ModuleRoot string
	// Out is where <name>.zip files go. Required.
	Out string
	// Functions to build; default Functions.
	Functions []string
	// Arch is GOARCH: amd64 (default) or arm64; it must match the host, since
	// cgo needs a native C compiler.
	Arch string
	// Go is the go command; default "go".
	Go string
	// Stderr receives the compiler's output; default os.Stderr.
	Stderr io.Writer
}

// Artifact is one built zip.
type Artifact struct {
	Function string
	Zip      string
	// SHA256 is the zip's base64 SHA-256, Terraform's source_code_hash.
	SHA256 string
	Size   int64
	// Glibc is the newest glibc symbol version the bootstrap needs ("" for a
	// static binary).
	Glibc string
}

// Build compiles each function and writes its zip.
func Build(ctx context.Context, cfg Config) ([]Artifact, error) {
	if cfg.ModuleRoot == "" || cfg.Out == "" {
		return nil, fmt.Errorf("zipbuild: ModuleRoot and Out are required")
	}
	if len(cfg.Functions) == 0 {
		cfg.Functions = Functions
	}
	if cfg.Arch == "" {
		cfg.Arch = "amd64"
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("zipbuild: %w", err)
	}
	tmp, err := os.MkdirTemp("", "zipbuild-")
	if err != nil {
		return nil, fmt.Errorf("zipbuild: %w", err)
	}
	defer os.RemoveAll(tmp)
	var out []Artifact
	for _, fn := range cfg.Functions {
		bin := filepath.Join(tmp, fn, "bootstrap")
		cmd := exec.CommandContext(ctx, cfg.Go, "build", "-trimpath", "-tags", "lambda.norpc", "-ldflags=-s -w -buildid=",
			"-o", bin, "./functions/"+fn)
		cmd.Dir = cfg.ModuleRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=linux", "GOARCH="+cfg.Arch)
		cmd.Stdout, cmd.Stderr = cfg.Stderr, cfg.Stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("zipbuild: build %s: %w", fn, err)
		}
		glibc, err := GlibcNeeded(bin)
		if err != nil {
			return nil, fmt.Errorf("zipbuild: %s: %w", fn, err)
		}
		if glibc != "" && compareVersions(glibc, Floor) > 0 {
			return nil, fmt.Errorf("zipbuild: %s needs glibc %s, newer than the %s of provided.al2023: build on an older distribution (e.g. Amazon Linux 2023 or Debian 12)", fn, glibc, Floor)
		}
		zipPath := filepath.Join(cfg.Out, fn+".zip")
		if err := Zip(bin, zipPath); err != nil {
			return nil, err
		}
		sum, size, err := hashFile(zipPath)
		if err != nil {
			return nil, err
		}
		out = append(out, Artifact{Function: fn, Zip: zipPath, SHA256: sum, Size: size, Glibc: glibc})
	}
	return out, nil
}

// GlibcNeeded returns the newest GLIBC_x.y version the ELF binary at path
// needs, or "" if it needs none (static or non-glibc).
func GlibcNeeded(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("read ELF: %w", err)
	}
	defer f.Close()
	needs, err := f.DynamicVersionNeeds()
	if err != nil {
		// A static binary has no version needs section.
		if f.Section(".gnu.version_r") == nil {
			return "", nil
		}
		return "", fmt.Errorf("read ELF version needs: %w", err)
	}
	newest := ""
	for _, n := range needs {
		for _, v := range n.Needs {
			ver, ok := strings.CutPrefix(v.Dep, "GLIBC_")
			if !ok || !isVersion(ver) {
				continue
			}
			if newest == "" || compareVersions(ver, newest) > 0 {
				newest = ver
			}
		}
	}
	return newest, nil
}

func isVersion(s string) bool {
	for _, p := range strings.Split(s, ".") {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return s != ""
}

// compareVersions compares dotted numeric versions.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}

// zipTime is the fixed timestamp of every entry, so zips are reproducible.
var zipTime = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Zip writes a zip holding bin as "bootstrap", mode 0755.
func Zip(bin, zipPath string) error {
	src, err := os.Open(bin)
	if err != nil {
		return fmt.Errorf("zipbuild: %w", err)
	}
	defer src.Close()
	tmp := zipPath + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("zipbuild: %w", err)
	}
	zw := zip.NewWriter(dst)
	hdr := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate, Modified: zipTime}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err == nil {
		_, err = io.Copy(w, src)
	}
	if err == nil {
		err = zw.Close()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("zipbuild: write %s: %w", zipPath, err)
	}
	return os.Rename(tmp, zipPath)
}

func hashFile(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), n, nil
}

// Unzip extracts the bootstrap of a function zip into dir and returns its path.
func Unzip(zipPath, dir string) (string, error) {
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return "", fmt.Errorf("zipbuild: %w", err)
	}
	defer zr.Close()
	if len(zr.File) != 1 || zr.File[0].Name != "bootstrap" {
		return "", fmt.Errorf("zipbuild: %s must hold exactly one entry named bootstrap", zipPath)
	}
	zf := zr.File[0]
	if zf.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("zipbuild: bootstrap in %s is not executable (mode %v)", zipPath, zf.Mode())
	}
	r, err := zf.Open()
	if err != nil {
		return "", err
	}
	defer r.Close()
	out := filepath.Join(dir, "bootstrap")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, zf.Mode().Perm())
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return "", err
	}
	return out, f.Close()
}
