package mask

import (
	"bytes"
	"sync"
	"time"
)

const (
	// StreamWindow is the look-ahead and look-behind a Stream keeps: a
	// secret up to this long is masked even when it arrives split across writes.
	StreamWindow = 8 << 10
	// streamMaxHold bounds how much output is held back while no clean cut
	// point is found; beyond it the held output is masked and sent as is.
	streamMaxHold = 1 << 20
)

// Stream masks a byte stream (command output, an HTTP body) with a carry-over
// window, for the engines that stream. Output is held back until at least StreamWindow bytes follow it (or the stream ends, or it has
// been idle for the flush delay, so prompts and slow output still arrive), and
// is masked together with StreamWindow bytes of what came before: a detector
// sees every secret of up to StreamWindow bytes whole. A secret split by an idle
// pause longer than the flush delay is masked only if each part is
// recognisable on its own.
//
// Each secret sent counts once in the Masker's Counts, however many times the
// overlapping windows rescan it.
type Stream struct {
	mu    sync.Mutex
	m     *Masker
	out   func([]byte) error
	delay time.Duration
	timer *time.Timer
	hist  []byte // already sent, kept as context
	pend  []byte // not sent yet
	err   error
	done  bool
	spans []span // scratch for scanning the current view (hist+pend)
	found []span // the view's matches, kept for counting what is sent
	count bool   // count what is sent in the Masker's Counts (off only in benchmarks' baselines)
}

// NewStream masks what is written with m and hands it to out. delay > 0
// flushes held output after that long without writes (prompts, slow output);
// delay <= 0 holds until Close. A nil or disabled m passes bytes through.
func NewStream(m *Masker, delay time.Duration, out func([]byte) error) *Stream {
	if m != nil && !m.Enabled() {
		m = nil
	}
	return &Stream{m: m, out: out, delay: delay, count: true}
}

func (w *Stream) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	if w.m == nil {
		if err := w.out(p); err != nil {
			w.err = err
			return 0, err
		}
		return len(p), nil
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

func (w *Stream) idle() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil && !w.done {
		_ = w.drain(true)
	}
}

// Close sends everything held back. After Close nothing is written.
func (w *Stream) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.done {
		return w.err
	}
	w.done = true
	if w.err == nil && w.m != nil {
		_ = w.drain(true)
	}
	return w.err
}

// Abort stops the stream without sending what is held back.
func (w *Stream) Abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
	w.done = true
}

func (w *Stream) emit(b []byte) error {
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

// drain sends what can be sent. final sends everything.
func (w *Stream) drain(final bool) error {
	// Wait for twice the window, so each pass sends at least a window's worth
	// and rescanning stays linear in the stream length.
	if len(w.pend) == 0 || !final && len(w.pend) < 2*StreamWindow {
		return nil
	}
	hl := len(w.hist)
	buf := make([]byte, 0, hl+len(w.pend))
	buf = append(append(buf, w.hist...), w.pend...)
	end := len(buf) - StreamWindow
	if final {
		end = len(buf)
	}
	if end <= hl {
		return nil
	}
	w.spans = w.m.scan(buf, w.spans[:0])
	w.found = append(w.found[:0], w.spans...) // apply sorts and merges spans
	m := w.m.apply(buf, w.spans)
	if sameSlice(m, buf) { // nothing to mask anywhere in view
		if err := w.emit(buf[hl:end]); err != nil {
			return err
		}
		w.advance(buf, end)
		return nil
	}
	tl := w.m.masked(buf[:hl])
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
			a = w.m.masked(buf[:cut])
		}
		if bytes.HasPrefix(m, a) && bytes.HasPrefix(a, tl) {
			if err := w.emit(a[len(tl):]); err != nil {
				return err
			}
			w.counted(hl, cut)
			w.advance(buf, cut)
			return nil
		}
	}
	if final || len(w.pend) > streamMaxHold {
		var err error
		if bytes.HasPrefix(m, tl) {
			err = w.emit(m[len(tl):])
			w.counted(hl, len(buf))
		} else if w.count {
			err = w.emit(w.m.Text(w.pend))
		} else {
			err = w.emit(w.m.masked(w.pend))
		}
		if err != nil {
			return err
		}
		w.advance(buf, len(buf))
	}
	return nil
}

// counted counts the matches of the current view that start in [from, to),
// the part just sent: a match starting in what was sent before was counted
// then, one starting later is counted when its part is sent.
func (w *Stream) counted(from, to int) {
	if !w.count {
		return
	}
	for _, sp := range w.found {
		if from <= sp.s && sp.s < to {
			sp.d.count.Add(1)
		}
	}
}

func (w *Stream) advance(buf []byte, cut int) {
	sent := buf[:cut]
	if len(sent) > StreamWindow {
		sent = sent[len(sent)-StreamWindow:]
	}
	w.hist = append(w.hist[:0], sent...)
	w.pend = append(w.pend[:0], buf[cut:]...)
}
