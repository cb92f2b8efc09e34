"""The GPU check: the GPU paths and their speed, in one command, on a machine with one NVIDIA GPU and no network.
Started by benchmarks/gpu_check.sh (which finds the interpreter and the carried wheels); results as JSON in OUTDIR.

1. `pytest -m gpu tests/gpu`: the transformers engine and the TRL trainer on CUDA in bfloat16 (tiny model).
2. train: the train stage (TRL, bf16) against a bare PyTorch loop on the same batches, on a random-weight
   Llama 3.2 1B-shaped model; MFU against the H200's dense bf16 peak, 989 TFLOP/s (benchmarks/bench_train.py).
3. think: generation tokens/s of the think stage with transformers on that model (benchmarks/bench_think.py).
4. quickstart-round: one `tpt run` round of the quick start on the GPU (engine transformers), end to end; then
   its train stage again the way a cluster's Job runs it, under `accelerate launch`.

Each check runs in processes of its own under a time limit (the limits add up to 8 minutes); one that fails or
runs out of time is recorded and the next one runs. Without CUDA, 2 and 3 run at a CPU size (their code paths,
not an MFU claim), 1 skips, 4 is skipped with the reason; the exit status is then 0 unless a check that ran
failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
H200_BF16_DENSE_TFLOPS = 989  # NVIDIA's H200 datasheet, dense (no sparsity)
# Seconds per check on a GPU: 480 in all. On a CPU only the small train and think runs take time.
LIMITS = {"pytest-gpu": 50, "train": 140, "think": 70, "quickstart-round": 220}
CPU_LIMITS = {"pytest-gpu": 120, "train": 120, "think": 90, "quickstart-round": 0}


@dataclass
class Result:
    check: str
    status: str  # passed | failed | timed_out | skipped
    seconds: float = 0.0
    limit_s: int = 0
    summary: str = ""
    reason: str = ""
    data: dict = field(default_factory=dict)


class Checker:
    def __init__(self, out: Path, work: Path, gpu: bool):
        self.out, self.work, self.gpu = out, work, gpu
        self.log = out / "log.txt"
        self.deadline = 0.0

    def sh(self, title: str, cmd: list[str]) -> int | None:
        """Run `cmd` in its own process group, output appended to log.txt; None if the check's time ran out
        (the whole group is killed)."""
        left = self.deadline - time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n===== {title}: {' '.join(cmd)}\n")
            log.flush()
            if left <= 0:
                return None
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
            try:
                return proc.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return None

    def python(self, title: str, *args: str) -> int | None:
        return self.sh(title, [sys.executable, *args])

    def must(self, title: str, *args: str) -> None:
        """`python(title, *args)`, the check failing (or timed out) unless it exits 0."""
        rc = self.python(title, *args)
        if rc != 0:
            raise CheckFailed(f"{title} ran out of time" if rc is None else f"{title} exited {rc} (log.txt)", rc)

    def model(self, size: str) -> Path:
        path = self.work / size
        if not (path / "random_llama.json").exists():
            self.must(f"random model {size}", str(BENCH / "random_llama.py"), "--size", size, "--out", str(path))
        return path


class CheckFailed(Exception):
    def __init__(self, reason: str, rc: int | None = 1):
        super().__init__(reason)
        self.timed_out = rc is None


def pytest_gpu(c: Checker) -> Result:
    junit = c.work / "junit.xml"
    rc = c.python("pytest -m gpu", "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider",
                  f"--junitxml={junit}")  # fmt: skip
    if rc is None:
        raise CheckFailed("pytest ran out of time", None)
    if not junit.exists():
        raise CheckFailed(f"pytest exited {rc} without a report (log.txt)", rc)
    cases = []
    for case in ET.parse(junit).iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = {"failure": "failed"}.get(tag, tag), node.get("message", "")
        cases.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time", 0)),
                      "message": message[:2000]})  # fmt: skip
    counts = {k: sum(x["outcome"] == k for x in cases) for k in ("passed", "failed", "error", "skipped")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    data = {"exit_status": rc, "counts": counts, "cases": cases}
    if rc not in (0, 5) or counts["failed"] or counts["error"]:
        return Result("pytest-gpu", "failed", summary=summary, reason="a test failed (cases, log.txt)", data=data)
    if cases and counts["skipped"] == len(cases):
        return Result("pytest-gpu", "skipped", summary=summary, reason=cases[0]["message"], data=data)
    return Result("pytest-gpu", "passed" if cases else "failed", summary=summary or "no tests collected", data=data)


def train(c: Checker) -> Result:
    model = c.model("llama-1b" if c.gpu else "cpu-small")
    report = c.work / "train.json"
    if c.gpu:
        size = ["--examples", "8192", "--batch-size", "128", "--peak-tflops", str(H200_BF16_DENSE_TFLOPS)]
    else:
        size = ["--examples", "64", "--batch-size", "16"]
    c.must("bench_train", str(BENCH / "bench_train.py"), "--model", str(model), *size, "--json", str(report))
    data = json.loads(report.read_text())
    stage, bare = data["rows"]
    label = "" if c.gpu else "CPU, code path only (not an MFU claim): "
    summary = (
        f"{label}{data['parameters'] / 1e6:,.1f}M params, {data['dtype']}: train stage "
        f"{stage['tokens_per_second']:,.0f} tok/s MFU {stage['mfu']:.1%}, bare loop {bare['tokens_per_second']:,.0f} "
        f"tok/s MFU {bare['mfu']:.1%}, stage/bare {stage['vs_bare']:.2f} (peak {data['peak_tflops']:.3g} TFLOP/s, "
        f"{data['peak_source']})"
    )
    return Result("train", "passed", summary=summary, data=data)


def think(c: Checker) -> Result:
    model = c.model("llama-1b" if c.gpu else "cpu-small")
    report = c.work / "think.json"
    if c.gpu:
        size = ["--problems", "128", "--n", "4", "--max-tokens", "160", "--dtype", "bfloat16"]
    else:
        size = ["--problems", "8", "--n", "2", "--max-tokens", "32", "--dtype", "float32"]
    c.must("bench_think", str(BENCH / "bench_think.py"), "--model", str(model), "--rows", "2,3",
           "--engine", "transformers", *size, "--json", str(report))  # fmt: skip
    data = json.loads(report.read_text())
    stage, engine = data["rows"]
    label = "" if c.gpu else "CPU, code path only: "
    summary = (
        f"{label}think stage (transformers, {data['dtype']}) {stage['tok_per_s']:,.0f} tok/s, the engine alone "
        f"{engine['tok_per_s']:,.0f} tok/s ({data['problems']} prompts x {data['n']}, max {data['max_tokens']})"
    )
    return Result("think", "passed", summary=summary, data=data)


def quickstart_round(c: Checker) -> Result:
    if not c.gpu:
        return Result(
            "quickstart-round", "skipped", reason="needs a GPU; on a CPU the quick start is `make quickstart`"
        )
    tiny = c.work / "arith-tiny"
    c.must("tpt tiny-model", "-m", "tpt_stages.cli", "tiny-model", "--out", str(tiny))
    # The quick start's pruned run as the README runs it, but one round, sampled with transformers (vLLM's CUDA
    # wheel cannot be carried to the GPU machine) in the dtype the GPU picks (bfloat16).
    doc = next(yaml.safe_load_all((REPO / "examples" / "quickstart.yaml").read_text()))
    spec = doc["spec"]
    spec["rounds"] = 1
    spec["model"] |= {"uri": str(tiny), "dtype": "auto"}
    spec["think"]["engine"] = "transformers"
    spec["storage"] = {"uri": f"file://{c.work}/runs"}
    run_file = c.work / "quickstart-round.yaml"
    run_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    rc = c.python("tpt run", "-m", "tpt_stages.cli", "run", str(run_file))
    run_dir = c.work / "runs" / doc["metadata"]["name"]
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    data = {"exit_status": rc, "status": status, "stage_reports": _stage_reports(run_dir)}
    data["tiny_model"] = json.loads((tiny / "tiny_model.json").read_text())
    if rc is None:
        return Result("quickstart-round", "timed_out", reason="tpt run ran out of time", data=data)
    rounds = status.get("rounds", [])
    curve = " -> ".join(f"{r['pass1']:.1%}" for r in rounds if r.get("pass1") is not None)
    reports = data["stage_reports"]
    summary = (
        f"phase {status.get('phase')}, Pass@1 {curve or '-'}; think "
        f"{reports.get('round-00/think', {}).get('tokens_per_second', '-')} tok/s, train on "
        f"{reports.get('round-01/model', {}).get('device', '-')} "
        f"{reports.get('round-01/model', {}).get('tokens_per_second', '-')} tok/s"
    )
    if rc != 0 or status.get("phase") != "Succeeded":
        data["stage_log_tails"] = _log_tails(run_dir / "logs")  # the run's folder goes with the check's
        reason = f"tpt run exited {rc}: {status.get('message', '')}"[:2000]
        return Result("quickstart-round", "failed", summary=summary, reason=reason, data=data)
    data["accelerate_train"] = again = _train_under_accelerate(c, run_dir)
    if again["exit_status"] != 0 or (again["report"] or {}).get("device") != ("cuda" if c.gpu else "cpu"):
        status = "timed_out" if again["exit_status"] is None else "failed"
        reason = f"the train stage under accelerate launch: exit {again['exit_status']}, report {again['report']}"
        return Result("quickstart-round", status, summary=summary, reason=reason, data=data)
    summary += f"; again under accelerate launch: {again['report']['tokens_per_second']} tok/s"
    return Result("quickstart-round", "passed", summary=summary, data=data)


def _train_under_accelerate(c: Checker, run_dir: Path) -> dict:
    """A cluster's train Job runs `accelerate launch --num_processes <GPUs> --num_machines 1 -m tpt_stages train`
    (operator/tpt_operator/builders.py); `tpt run` runs the stage without it. The finished round's model is removed
    and trained again that way, on the same selection."""
    model = run_dir / "round-01" / "model"
    shutil.rmtree(model)
    placement = ["--num_processes", "1"] if c.gpu else ["--cpu", "--num_processes", "1"]
    rc = c.python("accelerate launch train", "-m", "accelerate.commands.launch", *placement, "--num_machines", "1",
                  "-m", "tpt_stages", "train", "--round", "0", "--spec", f"file://{run_dir}/spec.yaml")  # fmt: skip
    committed = model / "_SUCCESS.json"
    return {"exit_status": rc, "report": json.loads(committed.read_text())["report"] if committed.exists() else None}


def _log_tails(logs: Path, lines: int = 60) -> dict:
    return {f.name: f.read_text(errors="replace").splitlines()[-lines:] for f in sorted(logs.glob("*.log"))}


def _stage_reports(run_dir: Path) -> dict:
    """Every committed stage's report, by its directory (shard reports of one stage under the stage)."""
    reports = {}
    for m in sorted(run_dir.glob("**/_SUCCESS.json")):
        key = str(m.parent.relative_to(run_dir)).replace("/shard-00000", "")
        reports[key] = json.loads(m.read_text()).get("report", {})
    return reports


def environment() -> dict:
    import importlib.metadata as md

    env = {"python": sys.version.split()[0], "executable": sys.executable, "cores": os.cpu_count(), "packages": {}}
    for name in ("torch", "transformers", "accelerate", "trl", "datasets", "tokenizers", "pyarrow", "fsspec",
                 "huggingface-hub", "pydantic", "pydantic-core", "pyyaml", "rich", "pytest", "vllm"):  # fmt: skip
        try:
            env["packages"][name] = md.version(name)
        except md.PackageNotFoundError:
            env["packages"][name] = None
    probe = subprocess.run(
        [sys.executable, "-c", "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'cuda': c, "
         "'cuda_version': torch.version.cuda, 'device': torch.cuda.get_device_name() if c else None, "
         "'bf16': c and torch.cuda.is_bf16_supported()}))"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    env |= json.loads(probe.stdout) if probe.returncode == 0 else {"cuda": False, "torch_error": probe.stderr[-2000:]}
    try:  # a copied checkout may come without .git, a bare machine without git
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
        env["commit"] = git.stdout.strip() or None
    except OSError:
        env["commit"] = None
    return env


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit("usage: benchmarks/gpu_check.sh OUTDIR")
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    (out / "env.json").write_text(json.dumps(env, indent=2))
    gpu = bool(env.get("cuda"))
    print(f"gpu_check: {env.get('device') or 'no CUDA device'}, python {env['python']}, torch "
          f"{env['packages']['torch']}; results in {out}", flush=True)  # fmt: skip
    limits = LIMITS if gpu else CPU_LIMITS
    results = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        checker = Checker(out, Path(tmp), gpu)
        for name, fn in (("pytest-gpu", pytest_gpu), ("train", train), ("think", think),
                         ("quickstart-round", quickstart_round)):  # fmt: skip
            t0 = time.monotonic()
            checker.deadline = t0 + limits[name]
            try:
                r = fn(checker)
            except CheckFailed as e:
                r = Result(name, "timed_out" if e.timed_out else "failed", reason=str(e))
            except Exception as e:  # a check's own bug must not stop the ones after it
                r = Result(name, "failed", reason=f"{type(e).__name__}: {e}")
            r.seconds, r.limit_s = round(time.monotonic() - t0, 1), limits[name]
            results.append(r)
            (out / f"{name}.json").write_text(json.dumps(asdict(r), indent=2))
            text = "; ".join(x for x in (r.summary, r.reason) if x)
            print(f"gpu_check: {name:<16} {r.status:<9} {r.seconds:6.1f} s  {text}", flush=True)
    total = round(time.monotonic() - start, 1)
    summary = {"gpu": gpu, "device": env.get("device"), "total_seconds": total,
               "checks": [{k: v for k, v in asdict(r).items() if k != "data"} for r in results]}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    bad = [r.check for r in results if r.status in ("failed", "timed_out")]
    print(f"gpu_check: {total:.0f} s in all; " + (f"FAILED: {', '.join(bad)}" if bad else "no check failed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
