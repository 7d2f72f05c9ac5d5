// Package harness is the measuring side of `make bench` (issue #9). It sits
// outside the request flow: it never runs inside the broker or a proxy, it only
// drives them from the outside (pgbench, psql, the jitgate CLI, the HTTP API) and
// turns what they print into numbers.
//
// It holds what is worth testing on its own: parsers for pgbench's summary, for
// `go test -bench` lines and for the broker's audit stage timings; the
// statistics the report uses (median, nearest-rank percentiles, paired ratios);
// the recording size per statement; and Relay, the plain io.Copy TCP relay that
// is the floor of "one extra hop" in the comparison. The orchestration (starting
// PostgreSQL, pgbouncer and `jitgate dev`, and writing bench/RESULTS.md) lives in
// bench/cmd/jgbench.
package harness
