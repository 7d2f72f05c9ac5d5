#!/usr/bin/env bash
# Stops the moto server localstack/up.sh started (only that process, by its
# recorded PID).
set -euo pipefail
state=${JITGATE_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/jitgate-localstack}
[ -f "$state/pid" ] || { echo "down.sh: nothing recorded in $state" >&2; exit 0; }
pid=$(cat "$state/pid")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
rm -f "$state/pid" "$state/endpoint"
