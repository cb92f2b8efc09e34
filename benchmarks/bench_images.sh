#!/usr/bin/env bash
# `make images` on each container storage driver, side by side: a cold build (base included), rebuilds after a
# code change (the usual case in CI: every commit changes what the images copy), a rebuild back to the first
# code, and a run with nothing to do; the store's size after each. Needs root, like `make images`.
#
#   sudo bash benchmarks/bench_images.sh [DRIVER...]     (default: vfs overlay; ~35 min, most of it vfs)
#
# Works on a clone of HEAD in a temporary directory, with a temporary store per driver: the checkout and
# ~/.cache/tpt/containers are not touched. Prints one markdown table row per measurement.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK=$(mktemp -d /tmp/bench-images.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
git clone -q "$ROOT" "$WORK/src"
cd "$WORK/src"

timed() { # LABEL: build, then print a row with the seconds it took and the store's size
	local start=$EPOCHREALTIME
	bash scripts/build-images.sh >"$WORK/$driver-$1.log" 2>&1 || { tail -20 "$WORK/$driver-$1.log" >&2; exit 1; }
	awk -v d="$driver" -v l="$1" -v a="$start" -v b="$EPOCHREALTIME" -v s="$(du -sh "$TPT_CONTAINERS" | cut -f1)" \
		'BEGIN { printf "| %s | %s | %.0f | %s |\n", d, l, b - a, s }'
}

drivers=("$@")
[ ${#drivers[@]} -gt 0 ] || drivers=(vfs overlay)
echo "| driver | build | seconds | store |"
echo "|---|---|---:|---:|"
for driver in "${drivers[@]}"; do
	export TPT_STORAGE_DRIVER=$driver TPT_CONTAINERS="$WORK/store-$driver"
	timed cold
	for i in 1 2 3; do
		echo "# bench_images $i" >>tpt_stages/__init__.py
		timed "code change $i"
	done
	git checkout -q tpt_stages/__init__.py
	timed "back to HEAD"
	timed "nothing to do"
	rm -rf "$TPT_CONTAINERS"
done
