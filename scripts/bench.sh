#!/usr/bin/env bash
# Runs the side-by-side benchmarks of issue #9 and regenerates bench/RESULTS.md.
# Never part of `make test`. Builds jitgate and the harness into a temp dir.
# Usage: scripts/bench.sh [--quick] [extra jgbench flags, e.g. -keep -rounds 5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh bench

quick=()
if [ "${1:-}" = "--quick" ]; then
  quick=(-quick)
  shift
fi

bin=$(mktemp -d "${TMPDIR:-/tmp}/jitgate-bench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT
echo "bench: building jitgate and bench/cmd/jgbench" >&2
go build -o "$bin/jitgate" ./cmd/jitgate
go build -o "$bin/jgbench" ./bench/cmd/jgbench
"$bin/jgbench" -jitgate "$bin/jitgate" -repo . -out bench/RESULTS.md "${quick[@]}" "$@"
echo "bench: wrote bench/RESULTS.md" >&2
