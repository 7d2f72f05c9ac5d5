package asciicast

import (
	"context"
	"errors"
	"io"
	"math"
	"strings"
	"sync"
	"time"
)

// Sanitizer removes the terminal escape sequences a recording must not replay
// into the viewer's terminal: OSC (ESC ], or the 8-bit 0x9d: clipboard writes
// with OSC 52, hyperlinks, title changes), DCS (ESC P), SOS (ESC X), PM
// (ESC ^) and APC (ESC _) strings, whatever they carry. CSI sequences (colors,
// cursor movement) and plain text pass. A string cut across two events is
// removed across them: the Sanitizer keeps its state between calls. The zero
// value is ready to use; it is not safe for concurrent use.
type Sanitizer struct {
	state sanState
}

type sanState int

const (
	sanText   sanState = iota
	sanEsc             // after ESC
	sanString          // inside an OSC/DCS/SOS/PM/APC string
	sanStrEsc          // ESC inside a string (ESC \ ends it)
)

// Clean returns s without the sequences it removes.
func (z *Sanitizer) Clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch z.state {
		case sanText:
			switch r {
			case 0x1b:
				z.state = sanEsc
			case 0x9d, 0x90, 0x98, 0x9e, 0x9f: // 8-bit OSC, DCS, SOS, PM, APC
				z.state = sanString
			default:
				b.WriteRune(r)
			}
		case sanEsc:
			switch r {
			case ']', 'P', 'X', '^', '_':
				z.state = sanString
			case 0x1b:
				// The first ESC stood alone: dropped, so that no ESC is
				// ever written next to what a removed string left behind.
			case 0x9d, 0x90, 0x98, 0x9e, 0x9f:
				z.state = sanString
			default:
				z.state = sanText
				b.WriteRune(0x1b)
				b.WriteRune(r)
			}
		case sanString:
			switch r {
			case 0x07, 0x9c: // BEL, 8-bit ST
				z.state = sanText
			case 0x1b:
				z.state = sanStrEsc
			case 0x18, 0x1a: // CAN, SUB abort the string
				z.state = sanText
			}
		case sanStrEsc:
			if r == '\\' {
				z.state = sanText
			} else if r != 0x1b {
				z.state = sanString
			}
		}
	}
	return b.String()
}

// PlayOptions control Play.
type PlayOptions struct {
	// Speed multiplies the recorded pace (2 is twice as fast); 0 means 1.
	Speed float64
	// NoWait writes everything at once, without the recorded pauses.
	NoWait bool
	// IdleLimit caps any one pause (before Speed applies); 0 means no cap.
	IdleLimit time.Duration
	// Step, when set, is called each time the recorded user pressed Enter
	// (an input event holding a carriage return or newline), after the
	// output before it was written and before the pause that follows: the
	// caller waits for the viewer there ("jump to the next command").
	Step func(ctx context.Context) error
	// Sleep waits d or until ctx ends (default: a timer). Tests inject a
	// recorder.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the output events of a recording to w at their recorded pace,
// through a Sanitizer. Input events are not written (the terminal echoed
// what mattered, as the user saw it); markers and resizes are skipped.
func Play(ctx context.Context, w io.Writer, evs []Event, opts PlayOptions) error {
	speed := opts.Speed
	if speed == 0 {
		speed = 1
	}
	if speed < 0 || math.IsNaN(speed) || math.IsInf(speed, 0) {
		return errors.New("asciicast: play: speed must be a positive number")
	}
	sleep := opts.Sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	var san Sanitizer
	last := 0.0
	for _, e := range evs {
		if err := ctx.Err(); err != nil {
			return err
		}
		gap := time.Duration((e.Time - last) * float64(time.Second))
		last = e.Time
		if opts.IdleLimit > 0 && gap > opts.IdleLimit {
			gap = opts.IdleLimit
		}
		if !opts.NoWait && gap > 0 {
			if err := sleep(ctx, time.Duration(float64(gap)/speed)); err != nil {
				return err
			}
		}
		switch e.Code {
		case Output:
			if s := san.Clean(e.Data); s != "" {
				if _, err := io.WriteString(w, s); err != nil {
					return err
				}
			}
		case Input:
			if opts.Step != nil && strings.ContainsAny(e.Data, "\r\n") {
				if err := opts.Step(ctx); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Pauser pauses a playback from another goroutine (a viewer's key press):
// use its Sleep as PlayOptions.Sleep. The zero value is running.
//
//	var p asciicast.Pauser
//	go func() { for readLine() { p.Toggle() } }()
//	asciicast.Play(ctx, os.Stdout, evs, asciicast.PlayOptions{Sleep: p.Sleep})
type Pauser struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed on resume; set while paused
}

// Toggle pauses a running playback or resumes a paused one; it reports
// whether the playback is paused now.
func (p *Pauser) Toggle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		p.paused = false
		close(p.resume)
		return false
	}
	p.paused, p.resume = true, make(chan struct{})
	return true
}

// Sleep waits d, then for as long as the playback is paused (or until ctx
// ends): a pause takes effect before the next event is written.
func (p *Pauser) Sleep(ctx context.Context, d time.Duration) error {
	if d > 0 {
		if err := sleepCtx(ctx, d); err != nil {
			return err
		}
	}
	for {
		p.mu.Lock()
		paused, resume := p.paused, p.resume
		p.mu.Unlock()
		if !paused {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-resume:
		}
	}
}
