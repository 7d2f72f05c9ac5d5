package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PgbenchResult is the summary pgbench prints at the end of a run.
type PgbenchResult struct {
	// TPS excludes the initial connection time (pgbench's own wording).
	TPS float64
	// LatencyMs is the average latency per transaction.
	LatencyMs float64
	// Transactions is the number of transactions actually processed.
	Transactions int64
	// Failed is the number of failed transactions (pgbench 15 prints it).
	Failed int64
}

// ErrPgbenchOutput is returned when pgbench's output lacks its summary.
var ErrPgbenchOutput = errors.New("harness: pgbench output has no summary")

// ParsePgbench reads pgbench's summary from its combined output. It fails
// closed: a run without a tps line, or with failed transactions, is an error,
// so a broken path never shows up in the report as a number.
func ParsePgbench(out []byte) (PgbenchResult, error) {
	var r PgbenchResult
	var sawTPS, sawTx bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			key, val, ok = strings.Cut(line, ":")
		}
		if !ok {
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		first := val
		if i := strings.IndexByte(val, ' '); i >= 0 {
			first = val[:i]
		}
		switch key {
		case "tps":
			if !strings.Contains(val, "without initial connection time") {
				continue // pgbench < 14 printed two tps lines; keep the one without connections
			}
			f, err := strconv.ParseFloat(first, 64)
			if err != nil {
				return r, fmt.Errorf("harness: pgbench tps %q: %w", val, err)
			}
			r.TPS, sawTPS = f, true
		case "latency average":
			f, err := strconv.ParseFloat(first, 64)
			if err != nil {
				return r, fmt.Errorf("harness: pgbench latency %q: %w", val, err)
			}
			if !strings.HasSuffix(val, "ms") {
				return r, fmt.Errorf("harness: pgbench latency %q: want milliseconds", val)
			}
			r.LatencyMs = f
		case "number of transactions actually processed":
			// "12345" or "800/800" with -t.
			n, _, _ := strings.Cut(first, "/")
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return r, fmt.Errorf("harness: pgbench transactions %q: %w", val, err)
			}
			r.Transactions, sawTx = v, true
		case "number of failed transactions":
			v, err := strconv.ParseInt(first, 10, 64)
			if err != nil {
				return r, fmt.Errorf("harness: pgbench failed transactions %q: %w", val, err)
			}
			r.Failed = v
		}
	}
	switch {
	case !sawTPS || !sawTx:
		return r, ErrPgbenchOutput
	case r.Failed > 0:
		return r, fmt.Errorf("harness: pgbench: %d failed transactions", r.Failed)
	case r.Transactions == 0 || r.TPS <= 0:
		return r, fmt.Errorf("harness: pgbench processed no transactions")
	}
	return r, nil
}
