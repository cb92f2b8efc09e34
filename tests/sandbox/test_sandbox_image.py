"""The built sandbox image (`make images`), run as the verify pod runs its `grade` container: the pod the operator
builds for a code task, turned into `podman run` options (its user, read-only root, no capabilities, no privilege
escalation, emptyDirs, environment) under gVisor (`runsc`, the chart's runtime class) without a network.

Inside it, the hostile suite (test_sandbox_hostile.py) runs through the harness with the backend the pod names:
every program must get the verdict it gets outside, and the witness after it must find nothing left behind.
The image holds no pip, nothing to install pip from, and no credentials.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
from dataclasses import asdict
from pathlib import Path

import podman
import pytest
import yaml
from test_sandbox_hostile import CASES, LIMITS, SECRET_ANSWER, WITNESS, Case

from tpt_stages.sandbox.harness import UID_RANGE

ROOT = Path(__file__).resolve().parents[2]
CANARY = "TPTCANARYINIMAGE"


def verify_pod(image: str) -> tuple[dict, dict]:
    """(pod spec, grade container) of the verify Job the operator builds for the code example."""
    from tpt_operator import builders
    from tpt_operator.config import OperatorConfig
    from tpt_stages import planner

    body = yaml.safe_load((ROOT / "examples" / "codecontests.yaml").read_text())
    body["metadata"].update(namespace="team-a", uid="00000000-0000-0000-0000-000000000001", generation=1)
    ref = planner.StageRef(round=0, stage=planner.Stage("verify"), attempt=0)
    (job,) = builders.build(body, planner.Launch(ref=ref, shards=1), OperatorConfig(sandbox_image=image))
    pod = job["spec"]["template"]["spec"]
    (grade,) = [c for c in pod["containers"] if c["image"] == image]
    return pod, grade


def in_pod(image: str, *args: str, stdin: str | None = None, mounts: tuple[str, ...] = ()) -> str:
    """Run `python ARGS` in the grade container of the verify pod, under gVisor; returns stdout."""
    pod, grade = verify_pod(image)
    assert pod["runtimeClassName"] and grade["securityContext"]["readOnlyRootFilesystem"]
    options = podman.run_args(pod, grade, namespace="team-a")
    flags = [*options, *(f for m in mounts for f in ("-v", m)), *(["-i"] if stdin is not None else [])]
    done = podman.podman("run", *flags, image, *args, runtime=podman.runtime_of(pod), input=stdin, timeout=600)
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    return podman.image("sandbox")


@pytest.fixture(scope="module")
def suite(image):
    return run_suite(image)


def run_suite(image: str) -> dict:
    """The hostile suite in the pod's grade container: {"backend", "uid", "restarts", "results": {name: [result,
    witness, seconds past the time limit]}}."""
    listener = socket.create_server(("127.0.0.1", 0))  # on the host: out of reach of a pod without a network
    port = listener.getsockname()[1]
    spec = {
        "limits": asdict(LIMITS),
        "cases": [
            {
                "name": c.name,
                "program": textwrap.dedent(c.program).replace("HOST_PORT", str(port)),
                "stdin": c.stdin.replace("SECRET_PREFIX", SECRET_ANSWER[:8]),
                "expected": c.expected,
                "timeout": c.timeout,
            }
            for c in CASES
        ],
        "witness": WITNESS.replace("CHECK_SHARED_PLACES", "True"),
        "canary": CANARY,
    }
    try:
        out = in_pod(
            image,
            "/suite/hostile_in_image.py",
            stdin=json.dumps(spec),
            mounts=(f"{Path(__file__).parent}:/suite:ro",),
        )
    finally:
        listener.close()
    # The last line: what programs wrote into the container's stdout (/proc/1/fd/1) comes before it.
    return json.loads(out.splitlines()[-1])


def test_the_harness_runs_as_the_verify_pod_says(suite):
    _, grade = verify_pod("sandbox")
    backend = {e["name"]: e.get("value") for e in grade["env"]}["TPT_SANDBOX_BACKEND"]
    assert suite["backend"] == backend == "userns"
    assert suite["uid"] == grade["securityContext"]["runAsUser"] == 65534
    assert suite["restarts"] == 0  # no program killed the harness or the zygote


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_program_in_the_image(suite, case: Case):
    result, witness, took = suite["results"][case.name]
    assert result["verdict"] in case.verdict.split("|"), result
    assert took < 15, took
    assert CANARY not in json.dumps(result) and SECRET_ANSWER not in result["stdout_tail"]
    assert witness["verdict"] == "correct", witness
    assert str(UID_RANGE[0]) not in witness["stdout_tail"]


def test_the_pod_runs_on_gvisor(image):
    """Else the suite below would prove nothing about gVisor: its kernel log is gVisor's own."""
    out = in_pod(
        image, "-c", "import subprocess; print(subprocess.run(['dmesg'], capture_output=True, text=True).stdout)"
    )
    assert "Starting gVisor" in out, out


def test_no_pip_and_nothing_to_install_it_from(image):
    out = in_pod(
        image,
        "-c",
        textwrap.dedent(
            """
            import ensurepip, importlib.util, os, shutil, subprocess, sys
            found = ["pip"] if importlib.util.find_spec("pip") else []
            found += [shutil.which(b) for b in ("pip", "pip3") if shutil.which(b)]
            bundled = os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")
            found += [bundled] if os.path.isdir(bundled) and os.listdir(bundled) else []
            subprocess.run([sys.executable, "-m", "venv", "/tmp/v"], capture_output=True)
            found += ["python -m venv made a pip"] if os.path.exists("/tmp/v/bin/pip") else []
            for top in ("/usr", "/opt"):
                found += [os.path.join(d, f) for d, _, fs in os.walk(top) for f in fs if f.endswith(".whl")]
            print(found or "none")
            """
        ),
    )
    assert out.strip() == "none", out


def test_no_credentials_in_the_image_or_the_pod(image):
    config = podman.inspect(image)["Config"]
    names = [e.split("=", 1)[0] for e in config.get("Env") or []]
    assert not [n for n in names if re.search(r"AWS|SECRET|TOKEN|PASSWORD|KEY|HF_", n)], names
    _, grade = verify_pod(image)
    assert "envFrom" not in grade
    assert not [e for e in grade["env"] if re.search(r"AWS|SECRET|TOKEN|PASSWORD|KEY|HF_", e["name"])]
    out = in_pod(
        image,
        "-c",
        "import glob, os; print(sorted(glob.glob('/root/.*') + glob.glob('/home/*/.*') + "
        "glob.glob('/var/run/secrets/*') + [k for k in os.environ if 'AWS' in k]) or 'none')",
    )
    assert out.strip() == "none", out


def test_the_grade_command_the_pod_runs_starts(image):
    """The pod's own command line (`python -m tpt_stages verify ... --phase grade`) reaches the stage program."""
    pod, grade = verify_pod(image)
    options = podman.run_args(pod, grade, namespace="team-a")
    done = podman.podman(
        "run", *options, image, *grade["args"], "--help", runtime=podman.runtime_of(pod), check=False, timeout=300
    )
    assert done.returncode == 0 and "--phase" in done.stdout, done.stdout + done.stderr


def test_programs_see_the_program_root_and_nothing_of_the_pod(image):
    """Through the grade phase's own entry point (run_batch, one harness per slot), programs are chroot'ed into
    the image's program root: no /proc, no /dev, none of the pod's directories, and the standard library works."""
    program = textwrap.dedent(
        """
        import ctypes, decimal, fractions, hashlib, json, os, sqlite3, statistics, subprocess, sys
        seen = [sorted(os.listdir("/")), os.listdir("/proc"), os.listdir("/dev"), os.listdir("/tmp"), os.getcwd()]
        seen.append(subprocess.run(["sh", "-c", "echo $((6 * 7))"], capture_output=True, text=True).stdout.strip())
        print(json.dumps(seen))
        """
    )
    out = in_pod(
        image,
        "-c",
        textwrap.dedent(
            f"""
            import json
            from tpt_stages.records import TestCase
            from tpt_stages.sandbox import ProgramJob, run_batch
            job = ProgramJob({program!r}, [TestCase(input="", output="")])
            results, backend = run_batch([job] * 6, backend="userns")
            print(json.dumps([backend, [r.stdout_tail for r in results], [r.verdict for r in results]]))
            """
        ),
    )
    backend, tails, _ = json.loads(out.splitlines()[-1])
    assert backend == "userns"
    for tail in tails:
        top, proc, dev, tmp, cwd, shell = json.loads(tail)
        # etc: Debian's python links its sitecustomize there; lib64 and the others: merged /usr's links.
        assert (
            {"proc", "dev", "tmp", "usr", "work"}
            <= set(top)
            <= {"proc", "dev", "tmp", "usr", "work", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}
        ), top
        assert proc == dev == tmp == [] and shell == "42"
        assert cwd in {f"/work/{i}" for i in range(4)}, cwd  # a slot of the pod's (examples/codecontests.yaml: 4 CPUs)
