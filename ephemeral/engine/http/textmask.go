package http

import (
	"bytes"
	"sync"
	"time"

	"github.com/jitgate/jitgate/ephemeral/mask"
)

const (
	// maskWindow is the look-ahead and look-behind of the text masker: a
	// secret up to this long is masked even when it arrives split across
	// reads.
	maskWindow = 8 << 10
	// maskMaxHold bounds what is held back while no clean cut point is found.
	maskMaxHold = 1 << 20
)

// textMasker masks a text body as it streams, with a carry-over window:
// output is held back until maskWindow more bytes follow it (or the body
// ends, or it has been idle for the flush delay when idle flushing is on), and
// is masked together with maskWindow bytes of what came before, so a detector
// sees every secret up to maskWindow bytes whole. A secret split by an idle
// pause longer than the flush delay is masked only if each part is
// recognisable alone. (The same algorithm as the SSH engine's stream masker,
// which is not exported.)
type textMasker struct {
	mu    sync.Mutex
	m     *mask.Masker
	out   func([]byte) error
	delay time.Duration // 0: no idle flush
	timer *time.Timer
	hist  []byte // already sent, kept as context
	pend  []byte // not sent yet
	err   error
	done  bool
}

func newTextMasker(m *mask.Masker, idle time.Duration, out func([]byte) error) *textMasker {
	return &textMasker{m: m, out: out, delay: idle}
}

func (w *textMasker) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	w.pend = append(w.pend, p...)
	if err := w.drain(false); err != nil {
		return 0, err
	}
	if w.delay > 0 && len(w.pend) > 0 && !w.done {
		if w.timer == nil {
			w.timer = time.AfterFunc(w.delay, w.idle)
		} else {
			w.timer.Reset(w.delay)
		}
	}
	return len(p), nil
}

func (w *textMasker) idle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && !w.done {
		_ = w.drain(true)
	}
}

// Close sends everything held back. After Close nothing is written.
func (w *textMasker) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.done {
		return w.err
	}
	w.done = true
	if w.err == nil {
		_ = w.drain(true)
	}
	return w.err
}

// Abort stops the masker without sending what is held back.
func (w *textMasker) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.done = true
}

func (w *textMasker) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if err := w.out(b); err != nil {
		w.err = err
	}
	return w.err
}

func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// drain sends what can be sent; final sends everything.
func (w *textMasker) drain(final bool) error {
	// Wait for twice the window, so each pass sends at least a window's worth
	// and rescanning stays linear in the body length.
	if len(w.pend) == 0 || !final && len(w.pend) < 2*maskWindow {
		return nil
	}
	hl := len(w.hist)
	buf := make([]byte, 0, hl+len(w.pend))
	buf = append(append(buf, w.hist...), w.pend...)
	end := len(buf) - maskWindow
	if final {
		end = len(buf)
	}
	if end <= hl {
		return nil
	}
	m := w.m.Text(buf)
	if sameSlice(m, buf) { // nothing to mask anywhere in view
		if err := w.emit(buf[hl:end]); err != nil {
			return err
		}
		w.advance(buf, end)
		return nil
	}
	tl := w.m.Text(buf[:hl])
	// Try the farthest cut first, then line and word boundaries before it.
	cuts := []int{end}
	if !final {
		if i := bytes.LastIndexByte(buf[hl:end], '\n'); i >= 0 {
			cuts = append(cuts, hl+i+1)
		}
		if i := bytes.LastIndexAny(buf[hl:end], " \t"); i >= 0 {
			cuts = append(cuts, hl+i+1)
		}
	}
	for _, cut := range cuts {
		a := m
		if cut != len(buf) {
			a = w.m.Text(buf[:cut])
		}
		if bytes.HasPrefix(m, a) && bytes.HasPrefix(a, tl) {
			if err := w.emit(a[len(tl):]); err != nil {
				return err
			}
			w.advance(buf, cut)
			return nil
		}
	}
	if final || len(w.pend) > maskMaxHold {
		var err error
		if bytes.HasPrefix(m, tl) {
			err = w.emit(m[len(tl):])
		} else {
			err = w.emit(w.m.Text(w.pend))
		}
		if err != nil {
			return err
		}
		w.advance(buf, len(buf))
	}
	return nil
}

func (w *textMasker) advance(buf []byte, cut int) {
	sent := buf[:cut]
	if len(sent) > maskWindow {
		sent = sent[len(sent)-maskWindow:]
	}
	w.hist = append(w.hist[:0], sent...)
	w.pend = append(w.pend[:0], buf[cut:]...)
}
