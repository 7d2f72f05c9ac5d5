package mask

import (
	"slices"
	"sync"
	"time"
)

const (
	// StreamWindow is the look-ahead and look-behind a Stream keeps: a
	// secret up to this long is masked even when it arrives split across writes.
	StreamWindow = 8 << 10
	// streamMaxHold bounds how much output is held back while a match that
	// may still grow blocks the cut; beyond it the held output is masked with
	// what is known and sent, and a detector still searching from further back
	// than this restarts there.
	streamMaxHold = 1 << 20
)

// Stream masks a byte stream (command output, an HTTP body) with a carry-over
// window, for the engines that stream. Output is held back until at least
// StreamWindow bytes follow it (or the stream ends, or it has been idle for the
// flush delay, so prompts and slow output still arrive): every secret of up to
// StreamWindow bytes is seen whole, and the output is what [Masker.Text] makes
// of the whole stream. A secret split by an idle pause longer than the flush
// delay is masked from the pause on when the whole is recognised, and before
// it only if the first part is recognisable on its own.
//
// The stream scans each byte about once: every detector keeps where its next
// search starts, settled matches are kept until sent, and a search that found
// nothing resumes only as far back as a match still unseen could begin (a few
// dozen bytes for the fixed-length detectors, the trailing run of token
// characters for token prefixes, the window for the others).
//
// Each secret sent counts once in the Masker's Counts.
//
// out must not keep the slice it is given after it returns: it may be the
// stream's own buffer.
type Stream struct {
	mu    sync.Mutex
	m     *Masker
	out   func([]byte) error
	delay time.Duration
	timer *time.Timer
	err   error
	done  bool
	count bool // count what is sent in the Masker's Counts (off only in benchmarks' baselines)

	buf   []byte      // the stream's bytes [base, base+len(buf))
	base  int         // stream offset of buf[0]
	sent  int         // stream offset up to which output was sent
	det   []streamDet // per detector of m, in order
	ready []sspan     // settled matches not yet wholly sent, stream offsets
	open  []sspan     // scratch: this pass's open matches
	view  []sspan     // scratch: ready then open, in each detector's order
	merge []sspan     // scratch: view sorted and merged
	outb  []byte      // scratch: masked output
}

// streamDet is one detector's progress through the stream.
type streamDet struct {
	from    int // stream offset its next search starts at
	counted int // stream offset of the start of its last counted match, -1 if none
}

// sspan is a match in stream offsets; det indexes m.detectors, -1 when
// matches of different detectors were merged.
type sspan struct{ s, e, det int }

// NewStream masks what is written with m and hands it to out. delay > 0
// flushes held output after that long without writes (prompts, slow output);
// delay <= 0 holds until Close. A nil or disabled m passes bytes through.
func NewStream(m *Masker, delay time.Duration, out func([]byte) error) *Stream {
	if m != nil && !m.Enabled() {
		m = nil
	}
	w := &Stream{m: m, out: out, delay: delay, count: true}
	if m != nil {
		w.det = make([]streamDet, len(m.detectors))
		for i := range w.det {
			w.det[i].counted = -1
		}
	}
	return w
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
	w.buf = append(w.buf, p...)
	if err := w.drain(false); err != nil {
		return 0, err
	}
	if w.delay > 0 && w.base+len(w.buf) > w.sent && !w.done {
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

// drain sends what can be sent: everything up to StreamWindow before the end
// that no unsettled match overlaps. final sends everything.
func (w *Stream) drain(final bool) error {
	end := w.base + len(w.buf)
	if end == w.sent || !final && end-w.sent <= StreamWindow {
		return nil
	}
	if end-w.sent > streamMaxHold {
		final = true // held too long behind a growing match: send what is known
	}
	settle := end - StreamWindow // a match ending by here cannot change any more
	w.open = w.open[:0]
	for i, d := range w.m.detectors {
		st := &w.det[i]
		from, open := st.from, false
		for from < end {
			s, e, ok := d.find(w.buf, from-w.base)
			if !ok {
				if !open {
					st.from = max(st.from, w.restart(d.name, end))
				}
				break
			}
			if e <= s { // a finder bug must not loop or leak: mask the byte
				e = s + 1
			}
			sp := sspan{s + w.base, e + w.base, i}
			from = sp.e
			if open || sp.e > settle {
				// Open: more input may change it, so it is searched for
				// again from the same place next time. Only a final pass
				// sends it, and the matches after it.
				w.open = append(w.open, sp)
				open = true
				if !final {
					break
				}
				continue
			}
			w.ready = append(w.ready, sp)
			st.from = sp.e
		}
	}
	// Each detector's matches in the order found, so counting sees their
	// starts rising.
	w.view = append(append(w.view[:0], w.ready...), w.open...)
	w.merged()

	cut := end
	if !final {
		cut = settle
		for _, sp := range w.merge {
			// Never cut a match short, unless it is longer than the window
			// already: then its first part is sent masked as far as it goes.
			if sp.s < cut && cut < sp.e && cut-sp.s < StreamWindow {
				cut = sp.s
				break
			}
		}
	}
	if cut > w.sent {
		if err := w.send(cut); err != nil {
			return err
		}
	}
	w.trim()
	return nil
}

// merged sorts and merges w.view into w.merge as Text's apply does.
func (w *Stream) merged() {
	w.merge = append(w.merge[:0], w.view...)
	if len(w.merge) == 0 {
		return
	}
	slices.SortFunc(w.merge, func(a, b sspan) int {
		if a.s != b.s {
			return a.s - b.s
		}
		return b.e - a.e
	})
	out := w.merge[:1]
	for _, sp := range w.merge[1:] {
		last := &out[len(out)-1]
		if sp.s < last.e {
			if sp.e > last.e {
				last.e = sp.e
			}
			if sp.det != last.det {
				last.det = -1
			}
			continue
		}
		out = append(out, sp)
	}
	w.merge = out
}

// send masks and sends [w.sent, cut), counts the matches starting before cut
// that were not counted yet, and forgets the settled matches sent whole.
func (w *Stream) send(cut int) error {
	part := w.buf[w.sent-w.base : cut-w.base]
	o := w.outb[:0]
	prev := w.sent
	masked := false
	for _, sp := range w.merge {
		s, e := max(sp.s, w.sent), min(sp.e, cut)
		if s >= e {
			continue
		}
		if !masked {
			o = slices.Grow(o, len(part)+64)
			masked = true
		}
		o = append(o, w.buf[prev-w.base:s-w.base]...)
		var d *detector
		if sp.det >= 0 {
			d = w.m.detectors[sp.det]
		}
		o = w.m.maskSpan(o, w.buf[s-w.base:e-w.base], d)
		prev = e
	}
	if masked {
		o = append(o, w.buf[prev-w.base:cut-w.base]...)
		part = o
		w.outb = o[:0]
	}
	if err := w.out(part); err != nil {
		w.err = err
		return err
	}
	if w.count {
		for _, sp := range w.view {
			if st := &w.det[sp.det]; sp.s < cut && sp.s > st.counted {
				st.counted = sp.s
				w.m.detectors[sp.det].count.Add(1)
			}
		}
	}
	keep := w.ready[:0]
	for _, sp := range w.ready {
		if sp.e > cut {
			keep = append(keep, sp)
		}
	}
	w.ready = keep
	w.sent = cut
	return nil
}

// trim drops the bytes no search and no send needs any more: everything
// more than StreamWindow before both the send point and every detector's
// next search (a match may look back that far, for a hint or an e-mail's
// local part).
func (w *Stream) trim() {
	keep := w.sent
	for i := range w.det {
		st := &w.det[i]
		if st.from < w.sent-streamMaxHold {
			// A match open for longer than the hold limit is given up on: its
			// search restarts at what was sent.
			st.from = w.sent
		}
		keep = min(keep, st.from)
	}
	keep -= StreamWindow
	if dead := keep - w.base; dead > 0 && dead >= len(w.buf)-dead {
		w.buf = append(w.buf[:0], w.buf[dead:]...)
		w.base = keep
	}
}

// restart returns the stream offset a detector that found nothing from its
// last search point (with end the end of the stream so far) searches from
// next time: the earliest a match it has not seen yet can start. A match it
// would find in what is buffered ends before end, so only one that runs into
// bytes still to come is unseen, and how far back that one can start is known
// per detector. Nothing is searched from further back than the window.
func (w *Stream) restart(name string, end int) int {
	lo := max(end-StreamWindow, w.base)
	switch name {
	case DetectCreditCard, DetectUSSSN, DetectAWSAccessKey:
		// At most 19 digits and 18 separators, 11 bytes, 20 bytes; plus the
		// byte after, that must not extend them.
		return max(end-64, lo)
	case DetectIBAN, DetectAWSSecretKey, DetectPEMPrivateKey:
		// At most 34 characters and 30 single spaces; exactly 40
		// characters; a BEGIN line of at most 96 bytes (a key whose BEGIN
		// line is complete is found, open, while its END line is missing).
		return max(end-128, lo)
	case DetectTokenPrefix:
		// Prefix and body are token characters: an unseen match starts in
		// the run of them the buffer ends with.
		return w.trailing(lo, clAlnum|clURL, false)
	case DetectJWT:
		// So do header, payload and signature, with their dots.
		return w.trailing(lo, clAlnum|clURL, true)
	case DetectEmail:
		// An unseen address has its '@' not yet here or right before the
		// run of domain characters the buffer ends with (the local part
		// before it is found from the '@', wherever the search starts).
		i := w.trailing(lo, clAlnum|clDomain, true)
		if i > lo && w.buf[i-1-w.base] == '@' {
			i--
		}
		return i
	}
	return lo
}

// trailing returns the stream offset where the run of bytes of the classes
// cl (and '.', if dot) that the buffer ends with starts, lo at the earliest.
func (w *Stream) trailing(lo int, cl uint8, dot bool) int {
	b := w.buf
	i, stop := len(b), lo-w.base
	for i > stop && (class[b[i-1]]&cl != 0 || dot && b[i-1] == '.') {
		i--
	}
	return w.base + i
}
