package http

import (
	"time"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// newTextMasker masks a text body as it streams (mask.Stream); idle 0 holds
// output until the body ends.
func newTextMasker(m *mask.Masker, idle time.Duration, out func([]byte) error) *mask.Stream {
	return mask.NewStream(m, idle, out)
}
