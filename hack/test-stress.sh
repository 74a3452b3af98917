#!/usr/bin/env bash
# The test suite under CPU contention (what `make test-stress` runs): two busy loops hog the
# CPUs while `go test -race -count=1` runs every package, then again with -cpu 1,2 (each test at
# GOMAXPROCS 1 and 2). A test whose assertion only holds on an idle machine fails here first.
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
echo "test-stress: pass 1: go test -race -count=1 ${pkgs[*]}"
"$go" test -race -count=1 -timeout "$gotimeout" "${pkgs[@]}" || rc=$?
echo "test-stress: pass 1 exit $rc after $((SECONDS - start)) s"
if ((rc == 0)); then
	start=$SECONDS
	echo "test-stress: pass 2: go test -race -count=1 -cpu 1,2 ${pkgs[*]}"
	"$go" test -race -count=1 -cpu 1,2 -timeout "$gotimeout" "${pkgs[@]}" || rc=$?
	echo "test-stress: pass 2 exit $rc after $((SECONDS - start)) s"
fi
exit "$rc"
