#!/usr/bin/env bash
# The test suite under CPU contention (what `make test-stress` runs): two busy loops hog the
# CPUs while `go test -race -count=1 -cpu 1,2` runs every package (each test at GOMAXPROCS 1,
# then 2). A test whose assertion only holds on an idle machine fails here first. (One pass:
# a separate pass at the default GOMAXPROCS repeated the -cpu 2 half on a 2-core machine.)
#
# The busy loops are bounded (SPREAD_STRESS_HOG_LIMIT seconds, default 5400, through timeout(1),
# so they end even if this script is killed with SIGKILL) and killed on any exit of the script.
#
#   hack/test-stress.sh [packages...]     (default ./...)
#
# Environment: GO, SPREAD_STRESS_HOG_LIMIT, SPREAD_STRESS_TIMEOUT (go test -timeout, default
# 30m), and the variables the tests read (SPREAD_KUBE_ASSETS, SPREAD_REQUIRE_KUBE, ...).
set -euo pipefail
go="${GO:-go}"
limit="${SPREAD_STRESS_HOG_LIMIT:-5400}"
gotimeout="${SPREAD_STRESS_TIMEOUT:-30m}"
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(./...)

hogs=()
stop_hogs() {
	local p
	for p in "${hogs[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${hogs[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	hogs=()
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for _ in 1 2; do
	timeout "$limit" bash -c 'while :; do :; done' &
	hogs+=($!)
done
echo "test-stress: 2 busy loops running (pids ${hogs[*]}, at most ${limit} s)"

start=$SECONDS
rc=0
echo "test-stress: go test -race -count=1 -cpu 1,2 ${pkgs[*]}"
"$go" test -race -count=1 -cpu 1,2 -timeout "$gotimeout" "${pkgs[@]}" || rc=$?
echo "test-stress: exit $rc after $((SECONDS - start)) s"
exit "$rc"
