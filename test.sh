#!/usr/bin/env bash
# Runs Levee's whole test suite. On a fresh Debian machine with Go it first
# installs what the tests need (Debian packages, Go modules).
#
#   ./test.sh            # everything
#   ./test.sh -short     # skip the slowest tests (large transfers)
#
# Tests that need a missing tool or privilege skip with a clear message;
# this script installs the tools so that they run.
set -euo pipefail
cd "$(dirname "$0")"

export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "test.sh: Go is required (https://go.dev/dl/)" >&2; exit 1; }

# Debian packages the tests use (see each package's README).
pkgs=()
command -v chromium >/dev/null || pkgs+=(chromium)
command -v curl >/dev/null || pkgs+=(curl)
if ((${#pkgs[@]})); then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "test.sh: installing ${pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq >/dev/null
		apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
	else
		echo "test.sh: not root or no apt-get: tests needing ${pkgs[*]} will skip" >&2
	fi
fi

go mod download
unformatted=$("$(go env GOROOT)/bin/gofmt" -l cmd internal bench)
if [ -n "$unformatted" ]; then
	echo "gofmt: these files need formatting (gofmt -w):" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags limithooks ./internal/limit/
# Every package also runs under the race detector (-short trims the
# longest tests there; about 4 minutes on 2 cores); the limithooks tag adds
# the limiter's interleaving tests (internal/limit hooks_test.go), whose
# hooks production builds compile out.
go test -count=1 -race -short -tags limithooks -timeout 15m ./... "$@"
go test -count=1 -timeout 20m ./... "$@"
