//go:build !unix

package record

import "os"

// lockFile is a no-op where flock is unavailable: there a live recording is
// told from an abandoned one only by the proxy's own upload.
func lockFile(f *os.File) error { return nil }
