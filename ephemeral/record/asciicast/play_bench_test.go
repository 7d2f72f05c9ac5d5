package asciicast_test

import (
	"strings"
	"testing"

	"github.com/jitgate/jitgate/ephemeral/record/asciicast"
)

// terminalOutput is 64 KiB of colored shell output with a title and an OSC
// 52 write now and then: what a replay feeds the sanitizer.
var terminalOutput = func() string {
	var b strings.Builder
	for b.Len() < 64<<10 {
		b.WriteString("\x1b[1;32muser@host\x1b[0m:~$ ls -la /var/log\r\n-rw-r----- 1 syslog adm 123456 Jan  1 00:00 syslog\r\n")
		if b.Len()%7 == 0 {
			b.WriteString("\x1b]0;title\x07\x1b]52;c;ZXZpbA==\x07")
		}
	}
	return b.String()
}()

// BenchmarkSanitizerBaseline copies the output rune by rune into a builder
// (the floor any streaming filter pays); BenchmarkSanitizer is the filter.
// go test -run X -bench Sanitizer ./ephemeral/record/asciicast
func BenchmarkSanitizerBaseline(b *testing.B) {
	b.SetBytes(int64(len(terminalOutput)))
	for b.Loop() {
		var sb strings.Builder
		for _, r := range terminalOutput {
			sb.WriteRune(r)
		}
		_ = sb.String()
	}
}

func BenchmarkSanitizer(b *testing.B) {
	b.SetBytes(int64(len(terminalOutput)))
	for b.Loop() {
		var z asciicast.Sanitizer
		_ = z.Clean(terminalOutput)
	}
}
