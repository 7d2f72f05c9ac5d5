package ssh

import (
	"time"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

// maskWindow is the stream masker's carry-over window (see mask.Stream).
const maskWindow = mask.StreamWindow

// newMaskWriter masks command output as it streams (mask.Stream).
func newMaskWriter(m *mask.Masker, delay time.Duration, out func([]byte) error) *mask.Stream {
	return mask.NewStream(m, delay, out)
}
