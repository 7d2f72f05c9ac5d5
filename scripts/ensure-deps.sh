#!/usr/bin/env bash
# Installs what jitgate's tests and demo need, only when it is missing:
# Debian packages (as root only; otherwise names them and fails) and Go tools.
# Usage: scripts/ensure-deps.sh [test|demo|bench]
set -euo pipefail
what=${1:-test}

need_pkgs=()
have_bin() { ls $1 >/dev/null 2>&1; }
have_bin '/usr/lib/postgresql/*/bin/initdb' || need_pkgs+=(postgresql-15)
command -v psql >/dev/null    || need_pkgs+=(postgresql-client-15)
command -v pgbench >/dev/null || need_pkgs+=(postgresql-contrib)
# SSH tests run a real sshd (test/sshtest) and the real ssh client.
have_bin /usr/sbin/sshd       || need_pkgs+=(openssh-server)
command -v ssh >/dev/null     || need_pkgs+=(openssh-client)
# test/browser drives the approval page in headless Chromium (Debian's chromium).
if [ "$what" = test ]; then
  [ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
fi
if [ "$what" = bench ]; then
  command -v pgbouncer >/dev/null || need_pkgs+=(pgbouncer)
fi

if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: missing Debian packages: ${need_pkgs[*]}" >&2
    echo "ensure-deps: install them with: sudo apt-get install -y ${need_pkgs[*]}" >&2
    exit 1
  fi
  echo "ensure-deps: installing ${need_pkgs[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Do not let the package start a cluster of its own: tests start their own.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# PostgreSQL refuses to run as root; tests run it as the postgres user.
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "ensure-deps: the postgres user is missing (the postgresql-15 package creates it)" >&2
  exit 1
fi
# The Lambda Runtime Interface Emulator runs the functions/ binaries in tests
# (test/lambdatest). Pinned: the emulator publishes no semver tags. Never run
# `aws-lambda-rie --help`: it hangs.
RIE_VERSION=v0.0.0-20261030222936-bef5c4ba774d
have_rie() {
  command -v aws-lambda-rie >/dev/null && return 0
  local gobin
  gobin=$(go env GOBIN); [ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
  [ -x "$gobin/aws-lambda-rie" ]
}
if [ "$what" = test ] && command -v go >/dev/null && ! have_rie; then
  echo "ensure-deps: installing aws-lambda-rie@$RIE_VERSION" >&2
  go install "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$RIE_VERSION"
fi
if [ "$what" = test ] && ! command -v moto_server >/dev/null; then
  echo "ensure-deps: moto_server (Python moto 5.x) is missing; install it with: pip install 'moto[server]>=5,<6'" >&2
  exit 1
fi

echo "ensure-deps: ok ($what)" >&2
