#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager)
# from the Go modules pinned in hack/kube/go.mod, into a versioned cache folder:
#
#   ${SPREAD_KUBE_ASSETS:-<repo>/.cache/kube/<kubernetes version>}/{etcd,kube-apiserver,kube-controller-manager}
#
# Idempotent: a binary already present is not rebuilt (the versioned folder is
# the cache key; delete it to force a rebuild). Each binary is built to a
# temporary file in the same folder and renamed into place, so an interrupted
# build never leaves a truncated binary behind.
#
# Built binaries are also kept in a per-user cache shared by every clone on the
# machine, ${SPREAD_KUBE_USER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spread/kube}/<version>,
# and taken from there instead of rebuilt: a fresh clone (CI) on the same machine
# skips the ~10 min build. SPREAD_KUBE_USER_CACHE=- disables it.
#
# A cold build (empty module and build caches) takes ~10 min on 2 cores and
# ~3 GB of RAM; a warm one takes seconds. -buildvcs=false keeps the binaries
# independent of the enclosing git checkout (and of git being usable at all).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
go="${GO:-go}"

# The nested module must not be pulled into a go.work of a parent folder.
export GOWORK=off

version="$("$go" -C "$here" list -m -f '{{.Version}}' k8s.io/kubernetes)"
if [[ ! "$version" =~ ^v1\.([0-9]+)\.[0-9]+$ ]]; then
	echo "build.sh: unexpected k8s.io/kubernetes version ${version:-<none>} in $here/go.mod" >&2
	exit 1
fi
minor="${BASH_REMATCH[1]}"
out="${SPREAD_KUBE_ASSETS:-$repo/.cache/kube/$version}"
mkdir -p "$out"
user_cache="${SPREAD_KUBE_USER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/spread/kube}"
shared=""
if [[ "$user_cache" != "-" ]]; then
	shared="$user_cache/$version"
	if ! mkdir -p "$shared" 2>/dev/null || [[ ! -w "$shared" ]]; then
		echo "build.sh: user cache $shared not writable, not using it" >&2
		shared=""
	fi
	if [[ "$shared" -ef "$out" ]]; then
		shared=""
	fi
fi

# place SRC DIR NAME: copies SRC to DIR/NAME through a temporary file and a rename (a
# hard link where possible), so a reader never sees half a binary.
place() {
	local tmp
	tmp="$(mktemp "$2/.$3.XXXXXX")"
	if ! ln -f "$1" "$tmp" 2>/dev/null; then
		cp "$1" "$tmp"
	fi
	chmod 0755 "$tmp"
	mv -f "$tmp" "$2/$3"
}

ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"

# name:package, built in this order (cheapest first).
targets=(
	"etcd:./cmd/etcd"
	"kube-apiserver:k8s.io/kubernetes/cmd/kube-apiserver"
	"kube-controller-manager:k8s.io/kubernetes/cmd/kube-controller-manager"
)

for target in "${targets[@]}"; do
	name="${target%%:*}"
	pkg="${target#*:}"
	if [[ -x "$out/$name" ]]; then
		echo "build.sh: $out/$name present, skipping"
		if [[ -n "$shared" && ! -x "$shared/$name" ]]; then
			place "$out/$name" "$shared" "$name"
		fi
		continue
	fi
	if [[ -n "$shared" && -x "$shared/$name" ]]; then
		place "$shared/$name" "$out" "$name"
		echo "build.sh: $out/$name taken from the user cache $shared"
		continue
	fi
	tmp="$(mktemp "$out/.$name.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	echo "build.sh: building $name ($pkg) ..."
	start=$SECONDS
	(cd "$here" && "$go" build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp" "$pkg")
	chmod 0755 "$tmp"
	mv -f "$tmp" "$out/$name"
	trap - EXIT
	echo "build.sh: built $out/$name in $((SECONDS - start)) s"
	if [[ -n "$shared" ]]; then
		place "$out/$name" "$shared" "$name"
	fi
done

echo "build.sh: control plane $version ready in $out"
