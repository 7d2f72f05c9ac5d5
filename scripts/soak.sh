#!/usr/bin/env bash
# soak.sh — the load soak of issue #9 (make soak): GRANTS concurrent session
# grants (default 200), each querying PostgreSQL through its own jitgate proxy
# process for DURATION (default 60s). Fails on any query error, on a proxy or
# per-grant role left behind, or when the broker's goroutines or open fds
# (from its /metrics) do not return to their baseline. Prints the broker's
# goroutines/fds/RSS before, at peak and after, and each proxy's RSS.
#
#   scripts/soak.sh                       # 200 grants × 60s
#   GRANTS=50 DURATION=10s scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GRANTS="${GRANTS:-200}"
DURATION="${DURATION:-60s}"
REPORT="${REPORT:-$(mktemp -t jitgate-soak.XXXXXX)}"
# A proxy per grant: each needs a few fds in the broker and a process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
echo "soak: $GRANTS grants × $DURATION (go test -tags soak ./test/soak -run TestSoak)"
go test -tags soak -count=1 -timeout 30m -run '^TestSoak$' ./test/soak \
	-soak.grants="$GRANTS" -soak.duration="$DURATION" -soak.report="$REPORT" -v 2>&1 | grep -v '^time=' 
echo "--- soak report ($REPORT)"
cat "$REPORT"
