package record

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CompanionTag is the Tag of the "notice" events that seal a grant's
// companion files (terminal casts) into its recording: Close writes one per
// file it finds in the recording's directory, just before "ended", with the
// file name in Statement, "sha256:<hex>" in Reason and the size in RowCount.
// The final chunk's signature then covers the casts too.
const CompanionTag = "companion"

// Companion is a companion file as its recording sealed it.
type Companion struct {
	Name   string
	SHA256 string
	Size   int64
}

// ErrCompanionMismatch is returned by Companion.Check for a file that is not
// the one the recording sealed.
var ErrCompanionMismatch = errors.New("record: companion file does not match its sealed digest")

// Companions lists the companion files sealed among evs.
func Companions(evs []Event) []Companion {
	var out []Companion
	for _, ev := range evs {
		if ev.Type != Notice || ev.Tag != CompanionTag {
			continue
		}
		sum, ok := strings.CutPrefix(ev.Reason, "sha256:")
		if !ok {
			continue
		}
		out = append(out, Companion{Name: ev.Statement, SHA256: sum, Size: ev.RowCount})
	}
	return out
}

// Check reads r to its end and reports whether it is the sealed file.
func (c Companion) Check(r io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("record: companion %s: %w", c.Name, err)
	}
	if n != c.Size || hex.EncodeToString(h.Sum(nil)) != c.SHA256 {
		return fmt.Errorf("%w: %s (%d bytes, sealed %d)", ErrCompanionMismatch, c.Name, n, c.Size)
	}
	return nil
}

// IsCompanionName reports whether name is a companion file name of grantID:
// "<grant id>.<something>.cast", one path element.
func IsCompanionName(grantID, name string) bool {
	rest, ok := strings.CutPrefix(name, grantID+".")
	return ok && grantID != "" && strings.HasSuffix(rest, CompanionExt) && len(rest) > len(CompanionExt) &&
		!strings.ContainsAny(name, `/\`) && filepath.Base(name) == name
}

// companionEvents digests the companion files next to the recording. A file
// that cannot be read is sealed as such (an error event), never skipped
// silently.
func (r *Recorder) companionEvents() []Event {
	paths, err := companions(r.cfg.Dir, r.cfg.Header.GrantID)
	if err != nil {
		return []Event{{Time: r.now().UTC(), Type: Error, Tag: CompanionTag, Error: "list companion files: " + err.Error()}}
	}
	var out []Event
	for _, p := range paths {
		ev := Event{Time: r.now().UTC(), Type: Notice, Tag: CompanionTag, Statement: filepath.Base(p)}
		sum, n, err := digestFile(p)
		if err != nil {
			ev.Type, ev.Error = Error, "digest: "+err.Error()
		} else {
			ev.Reason, ev.RowCount = "sha256:"+sum, n
		}
		out = append(out, ev)
	}
	return out
}

func digestFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
