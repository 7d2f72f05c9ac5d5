#!/usr/bin/env bash
# Runs the AWS-mode end-to-end test (functions/e2e_test.go) against whichever
# local AWS endpoint is up: the moto server of localstack/up.sh, else
# LocalStack on localhost:4566, else it says how to start one.
set -euo pipefail
state=${JITGATE_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/jitgate-localstack}
root=$(cd "$(dirname "$0")/.." && pwd)
endpoint=${JITGATE_E2E_AWS_ENDPOINT:-}
if [ -z "$endpoint" ] && [ -s "$state/endpoint" ] && kill -0 "$(cat "$state/pid" 2>/dev/null)" 2>/dev/null; then
  endpoint=$(cat "$state/endpoint")
fi
if [ -z "$endpoint" ] && curl -fsS -m 2 http://localhost:4566/_localstack/health >/dev/null 2>&1; then
  endpoint=http://localhost:4566
fi
if [ -z "$endpoint" ]; then
  echo "e2e.sh: no local AWS endpoint is up: run localstack/up.sh (moto) or docker compose -f localstack/docker-compose.yml up -d (LocalStack)" >&2
  exit 1
fi
echo "e2e.sh: AWS endpoint $endpoint" >&2
cd "$root"
JITGATE_E2E_AWS_ENDPOINT=$endpoint exec go test -count=1 -timeout 15m -run 'TestAWSEndToEnd' -v ./functions/
