#!/usr/bin/env bash
# Build the operator and sandbox images from their real Dockerfiles with buildah: `make images`.
#
# No registry is needed. The base the Dockerfiles expect (PYTHON_IMAGE, python:*-slim on a workstation) is made
# here from Debian: debootstrap's minbase of bookworm plus Debian's Python, shaped like the official slim images
# where the Dockerfiles depend on it: `python` on PATH, pip installed by ensurepip in its own location
# (/usr/local, uninstallable like any distribution), no PEP 668 marker, no setuptools. The host's extra CA
# certificates go into that base only (a TLS-inspecting egress would otherwise fail pip inside the builds).
#
# Everything is cached per machine, outside the checkout, under $TPT_CONTAINERS (default ~/.cache/tpt/containers):
# container storage, the base image by a hash of its recipe, build steps by buildah's layer cache, and a build is
# skipped when its inputs are those of the image (a label records them). The storage is overlay where the kernel
# mounts it (a layer holds only its changes) and vfs elsewhere (every layer a full copy of the image's tree: a dozen
# times the disk, and minutes of copying per build); $TPT_CONTAINERS/storage.conf names it for podman, buildah and
# the tests. After each build, the layers that no image or cached step of the current builds uses are removed:
# the store stays the size of one build of each image instead of growing with every change.
#
# Needs root (debootstrap, chroot, container storage) and Debian's buildah, podman, runc and debootstrap, which it
# installs when missing. crun, podman's default runtime, fails here on hybrid cgroups: everything uses runc.
#
# Environment: TPT_CONTAINERS, TPT_STORAGE_DRIVER (overlay or vfs; default: overlay when it mounts),
# IMAGE_PREFIX (default localhost/tpt), DEBIAN_MIRROR.
# Prints `name image-id size` per image; the tests (tests/podman.py) run the same images from the same storage.
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

# Can this kernel mount overlay with its upper layer on the store's filesystem?
overlay_mounts() {
	local probe ok=1
	probe=$(mktemp -d "$STORE/overlay-probe.XXXXXX")
	mkdir "$probe/lower" "$probe/upper" "$probe/work" "$probe/merged"
	mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" \
		"$probe/merged" 2>/dev/null && umount "$probe/merged" && ok=0
	rm -rf "$probe"
	return $ok
}
DRIVER="${TPT_STORAGE_DRIVER:-}"
if [ -z "$DRIVER" ]; then
	if overlay_mounts; then DRIVER=overlay; else DRIVER=vfs; fi
fi
case "$DRIVER" in overlay | vfs) ;; *) die "TPT_STORAGE_DRIVER=$DRIVER: overlay or vfs" ;; esac
# One storage root per driver: containers/storage refuses a root that another driver made.
cat >"$STORE/storage.conf" <<EOF
[storage]
driver = "$DRIVER"
graphroot = "$STORE/$DRIVER"
runroot = "$STORE/run"
EOF
export CONTAINERS_STORAGE_CONF="$STORE/storage.conf"
# Before 2026-11-29 the store was vfs under storage/, and grew by a full copy per changed layer (43 GB here).
if [ -d "$STORE/storage/vfs" ]; then
	log "removing the old vfs store ($(du -sh "$STORE/storage" | cut -f1)): $STORE/storage"
	rm -rf "$STORE/storage"
fi
log "storage: $DRIVER in $STORE/$DRIVER"

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
	local name=$1 dockerfile=$2 start=$SECONDS hash log="$STORE/run/build-$1.log" steps="$STORE/steps-$1"
	hash=$(inputs "$dockerfile")
	# Skip a build whose inputs did not change: even a fully cached one commits the final image again.
	if [ "$(podman image inspect --format '{{ index .Labels "dev.tpt.inputs" }}' "$PREFIX/$name:$VERSION" 2>/dev/null)" = "$hash" ]; then
		log "$PREFIX/$name:$VERSION is up to date"
		[ -s "$steps" ] || echo "$PREFIX/$name:$VERSION" >"$steps"
		return
	fi
	log "building $PREFIX/$name:$VERSION from $dockerfile"
	buildah bud --runtime runc --layers --pull=never --label "dev.tpt.inputs=$hash" \
		--build-arg PYTHON_IMAGE="$BASE" --build-arg VERSION="$VERSION" --build-arg REVISION="$revision" \
		-f "$ROOT/$dockerfile" -t "$PREFIX/$name:$VERSION" "$ROOT" >"$log" 2>&1 ||
		{ tail -40 "$log" >&2; die "building $PREFIX/$name:$VERSION failed (log: $log)"; }
	# The images this build is made of, cached steps included, for the clean-up to keep. Each step ends in
	# `--> ID` or `--> Using cache ID`: the build stages' images are untagged dead ends that only this list
	# tells from an old build's.
	{
		sed -n 's/^--> \(Using cache \)\{0,1\}\([0-9a-f]\{7,\}\)$/\2/p' "$log"
		echo "$PREFIX/$name:$VERSION"
	} >"$steps"
	log "built $PREFIX/$name:$VERSION in $((SECONDS - start)) s"
}

# Remove what no build uses any more: old builds' images (and with them their layers) and the working
# containers of interrupted builds. Only untagged images go, and none that a kept image descends from.
clean() {
	local -A keep=()
	local stale=() id repo parent
	buildah rm --all >/dev/null
	while read -r id; do
		while [ -n "$id" ] && [ -z "${keep[$id]:-}" ]; do
			keep[$id]=1
			parent=$(podman image inspect --format '{{.Parent}}' "$id")
			id=${parent#sha256:}
		done
	done < <(cat "$STORE"/steps-{operator,sandbox} | xargs -r podman image inspect --format '{{.Id}}')
	while read -r id repo; do
		id=${id#sha256:}
		[ "$repo" = "<none>" ] && [ -z "${keep[$id]:-}" ] && stale+=("$id")
	done < <(podman images --all --no-trunc --format '{{.ID}} {{.Repository}}')
	[ ${#stale[@]} -gt 0 ] || return 0
	podman rmi --force "${stale[@]}" >/dev/null
	log "removed ${#stale[@]} images of earlier builds; the store holds $(du -sh "$STORE/$DRIVER" | cut -f1)"
}

build operator images/operator/Dockerfile
build sandbox images/sandbox/Dockerfile
clean

for name in operator sandbox; do
	podman image inspect --format "$name {{.Id}} {{.Size}}" "$PREFIX/$name:$VERSION"
done
