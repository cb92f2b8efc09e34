#!/usr/bin/env bash
# Build the operator and sandbox images from their real Dockerfiles with buildah: `make images`.
#
# No registry is needed. The base the Dockerfiles expect (PYTHON_IMAGE, python:*-slim on a workstation) is made
# here from Debian: debootstrap's minbase of bookworm plus Debian's Python, shaped like the official slim images
# where the Dockerfiles depend on it: `python` on PATH, pip installed by ensurepip in its own location
# (/usr/local, uninstallable like any distribution), no PEP 668 marker, no setuptools. The host's extra CA
# certificates go into that base only (a TLS-inspecting egress would otherwise fail pip inside the builds).
#
# Everything is cached per machine, outside the checkout: container storage (vfs: no overlay mounts needed)
# under $TPT_CONTAINERS (default ~/.cache/tpt/containers), the base image by a hash of its recipe, build steps by
# buildah's layer cache, and a build is skipped when its inputs are those of the image (a label records them).
#
# Needs root (debootstrap, chroot, container storage) and Debian's buildah, podman, runc and debootstrap, which it
# installs when missing. crun, podman's default runtime, fails here on hybrid cgroups: everything uses runc.
#
# Environment: TPT_CONTAINERS, IMAGE_PREFIX (default localhost/tpt), DEBIAN_MIRROR.
# Prints `name image-id size` per image; the tests (tests/images/) run the same images from the same storage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STORE="${TPT_CONTAINERS:-${XDG_CACHE_HOME:-$HOME/.cache}/tpt/containers}"
PREFIX="${IMAGE_PREFIX:-localhost/tpt}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
BASE="$PREFIX/python-base:$SUITE"
TOOLS=(buildah podman runc debootstrap)
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml")

die() {
	echo "build-images: ERROR: $*" >&2
	exit 1
}
log() { echo "build-images: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, container storage); run \`sudo make images\`"
[ -n "$VERSION" ] || die "no version in pyproject.toml"
missing=()
for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
	command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them with (Debian/Ubuntu)"
	log "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$STORE"
exec 9>"$STORE/build.lock"
flock 9 # one build at a time per storage

STORAGE=(--root "$STORE/storage" --runroot "$STORE/run" --storage-driver vfs)
buildah() { command buildah "${STORAGE[@]}" "$@"; }
podman() { command podman "${STORAGE[@]}" "$@"; }

make_base() {
	local rootfs=$1
	debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 ||
		{ tail -20 "$rootfs.log" >&2; die "debootstrap $SUITE from $MIRROR failed (log: $rootfs.log)"; }
	chroot "$rootfs" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -qq --no-install-recommends \
		python3 python3-venv python-is-python3 ca-certificates >/dev/null 2>&1 ||
		die "apt-get install of Python in the $SUITE rootfs failed"
	# A TLS-inspecting egress signs with CAs that only the host trusts; the registry images need none of this.
	if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
		cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
		chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
	fi
	# As in the official images: pip under /usr/local (Debian disables ensurepip: pip installs itself from the
	# wheel python3-venv ships), no PEP 668 marker, no setuptools (3.12+).
	rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
	chroot "$rootfs" sh -c 'whl=$(echo /usr/share/python-wheels/pip-*.whl) &&
		python3 "$whl/pip" install -q --no-index --root-user-action=ignore "$whl"'
	chroot "$rootfs" python3 -c 'import pip, sys; sys.exit(not pip.__file__.startswith("/usr/local/"))' ||
		die "pip did not install under /usr/local"
	chroot "$rootfs" apt-get clean
	rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/root/.cache "$rootfs"/tmp/*
}

# The base: rebuilt only when its recipe (the function above) or the suite changes.
recipe=$( (declare -f make_base && echo "$SUITE $MIRROR") | sha256sum | cut -c1-16)
have=$(podman image inspect --format '{{ index .Labels "dev.tpt.base.recipe" }}' "$BASE" 2>/dev/null || true)
if [ "$have" != "$recipe" ]; then
	log "making $BASE from Debian $SUITE (debootstrap, ~1-2 min)"
	start=$SECONDS
	rootfs="$STORE/rootfs-$SUITE"
	rm -rf "$rootfs"
	make_base "$rootfs"
	python=$(chroot "$rootfs" python3 -c 'import platform; print(platform.python_version())')
	tar -C "$rootfs" -c . | podman import --quiet \
		--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		--change "ENV LANG=C.UTF-8" \
		--change 'CMD ["python3"]' \
		--change "LABEL dev.tpt.base.recipe=$recipe" \
		--change "LABEL dev.tpt.base.source=debootstrap-$SUITE-minbase" \
		--change "LABEL dev.tpt.base.python=$python" \
		- "$BASE" >/dev/null
	rm -rf "$rootfs" "$rootfs.log"
	log "made $BASE (Python $python) in $((SECONDS - start)) s"
fi

# The image's revision: the commit, marked dirty when what the images copy differs from it.
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] &&
	[ -n "$(git -C "$ROOT" status --porcelain -- pyproject.toml README.md tpt_stages operator images)" ]; then
	revision="$revision-dirty"
fi

# What a build reads: the Dockerfile, the build context (.dockerignore's allow-list), the base and the version.
inputs() {
	(
		cat "$ROOT/$1"
		podman image inspect --format '{{.Id}}' "$BASE"
		echo "$VERSION"
		cd "$ROOT" && find pyproject.toml README.md tpt_stages operator -type f ! -name '*.pyc' \
			! -path '*__pycache__*' ! -path '*.egg-info*' -print0 | sort -z | xargs -0 sha256sum
	) | sha256sum | cut -c1-16
}

build() {
	local name=$1 dockerfile=$2 start=$SECONDS hash
	hash=$(inputs "$dockerfile")
	# Even a fully cached buildah build copies every layer on vfs (minutes): skip it when nothing changed.
	if [ "$(podman image inspect --format '{{ index .Labels "dev.tpt.inputs" }}' "$PREFIX/$name:$VERSION" 2>/dev/null)" = "$hash" ]; then
		log "$PREFIX/$name:$VERSION is up to date"
		return
	fi
	log "building $PREFIX/$name:$VERSION from $dockerfile"
	buildah bud --runtime runc --layers --pull=never --quiet --label "dev.tpt.inputs=$hash" \
		--build-arg PYTHON_IMAGE="$BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$revision" \
		-f "$ROOT/$dockerfile" -t "$PREFIX/$name:$VERSION" "$ROOT" >/dev/null
	log "built $PREFIX/$name:$VERSION in $((SECONDS - start)) s"
}
build operator images/operator/Dockerfile
build sandbox images/sandbox/Dockerfile
# No `podman image prune`: the build stages' layers are untagged dead ends, and pruning them empties the cache.
# The cache grows by the changed layers of each rebuild; `rm -rf $STORE` starts afresh.

for name in operator sandbox; do
	podman image inspect --format "$name {{.Id}} {{.Size}}" "$PREFIX/$name:$VERSION"
done
