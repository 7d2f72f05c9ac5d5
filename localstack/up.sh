#!/usr/bin/env bash
# Starts moto's server as the local stand-in for LocalStack (same endpoints:
# DynamoDB, S3, ECS, Lambda control plane, STS, KMS, IAM, EC2, EventBridge,
# CloudWatch Logs) on a free loopback port, in the background. Prints the
# endpoint and records it and the PID in $JITGATE_LOCALSTACK_STATE (default
# ${TMPDIR:-/tmp}/jitgate-localstack). localstack/down.sh stops it.
#
#   endpoint=$(localstack/up.sh)
#   terraform -chdir=terraform/examples/localstack apply -var endpoint=$endpoint
#   make localstack-e2e
#
# With Docker, `docker compose -f localstack/docker-compose.yml up -d` runs the
# real LocalStack on localhost:4566 instead; everything else is the same.
set -euo pipefail
state=${JITGATE_LOCALSTACK_STATE:-${TMPDIR:-/tmp}/jitgate-localstack}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$state"

if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null && [ -s "$state/endpoint" ]; then
  cat "$state/endpoint"
  exit 0
fi
command -v moto_server >/dev/null || { echo "up.sh: moto_server is not on PATH (pip install 'moto[server]>=5,<6')" >&2; exit 1; }
rm -f "$state/endpoint" "$state/pid"
(cd "$root" && go build -o "$state/motoserver" ./localstack/motoserver)
nohup "$state/motoserver" -state "$state" >"$state/log" 2>&1 &
echo $! >"$state/pid"
for _ in $(seq 1 600); do
  if [ -s "$state/endpoint" ]; then
    cat "$state/endpoint"
    exit 0
  fi
  if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
    echo "up.sh: moto did not start:" >&2
    cat "$state/log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "up.sh: moto did not report an endpoint within 60s; see $state/log" >&2
exit 1
