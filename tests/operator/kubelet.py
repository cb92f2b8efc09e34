"""A test kubelet plus Job controller: runs the Jobs created in the emulator as local processes.

It polls the Jobs in the emulator, creates one Pod per completion index (labels, completion-index annotation,
ownerReference, as the Job controller does), runs the pod's containers as subprocesses (init containers in
order, native sidecars beside the main containers), and writes the outcome back through the API: Pod status
with each container's `terminated.message` (the stage's report, or the log's tail on failure, as
`FallbackToLogsOnError` does) and Job status (startTime, succeeded/failed, Complete/Failed conditions,
completionTime).

Containers get what a real pod would: their `env` (with `$(VAR)` expansion and the completion-index fieldRef),
`envFrom` Secrets read from the emulator (that is how S3 credentials reach stages: the operator never sees
them), `JOB_COMPLETION_INDEX`, and emptyDir mounts mapped to temporary directories. The report channel is
`$TPT_REPORT_FILE`, standing in for /dev/termination-log.

`fake=` swaps the stage processes (`-m tpt_stages STAGE ...`) for an in-process function that returns a
plausible report at once: the operator logic tests and the benchmark need Job turnover, not models. Other
containers (the storage cleanup's `tpt delete`) still run as processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

INDEX = "batch.kubernetes.io/job-completion-index"
NOW = lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")  # noqa: E731
# Paths that stay what they are on the host (the stage code needs a real /tmp; /dev/shm is the host's).
UNMAPPED = ("/tmp", "/dev/shm")


def stage_of(args: list[str]) -> tuple[str, int]:
    """(stage, round) from `... -m tpt_stages <stage> --round R ...`."""
    i = args.index("tpt_stages")
    return args[i + 1], int(args[args.index("--round") + 1])


def fake_report(stage: str, rnd: int, shard: int) -> dict[str, Any]:
    """What a stage would report, with Pass@1 rising 0.10 per round."""
    p1 = round(0.2 + 0.1 * rnd, 4)
    return {
        "prepare": {"problems": {"train": 20, "test": 10}},
        "think": {"samples": 30, "tokens": 900, "model_uri": f"s3://fake/round-{rnd:02d}/model"},
        "verify": {"samples": 30, "verdicts": {"correct": 10, "wrong": 20}},
        "score": {
            "k": 2,
            "test_problems": 10,
            "primary": "strict",
            "disagreements": 0,
            "infra_errors": 0,
            "graders": {"strict": {"pass1": p1, "passk": min(1.0, p1 + 0.1), "correctk": min(1.0, p1 + 0.1)}},
            "funnel": {"problems": 20, "generated": 40, "answered": 30, "correct": 10, "unique": 8, "selected": 8},
        },
        "select": {"selected": 8},
        "train": {"model_uri": f"s3://fake/round-{rnd + 1:02d}/model", "examples": 8},
    }[stage] | {"shard": shard}


FakeFn = Callable[[str, int, int, str], tuple[int, dict | str]]


def default_fake(stage: str, rnd: int, shard: int, job: str) -> tuple[int, dict | str]:
    return 0, fake_report(stage, rnd, shard)


class Kubelet:
    def __init__(
        self, url: str, workdir: Path, *, fake: FakeFn | None = None, fake_seconds: float = 0.0,
        extra_env: dict[str, str] | None = None, poll: float = 0.05,
    ):  # fmt: skip
        self.url, self.workdir, self.fake, self.fake_seconds = url.rstrip("/"), workdir, fake, fake_seconds
        self.extra_env, self.poll = extra_env or {}, poll
        self.tasks: dict[str, asyncio.Task] = {}
        self.session: aiohttp.ClientSession | None = None
        self.runner: asyncio.Task | None = None
        self.errors: list[str] = []
        self.completed_at: dict[tuple[str, str], float] = {}  # (namespace, job) -> time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        self.runner = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.runner:
            self.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.runner
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.session:
            await self.session.close()

    async def _loop(self) -> None:
        """Watch the Jobs (a list every poll would cost O(all Jobs) per tick: 9 MB a tick at 200 runs)."""
        while True:
            try:
                async with self.session.get(self.url + "/apis/batch/v1/jobs", params={"watch": "true"}) as r:
                    r.raise_for_status()
                    async for line in r.content:
                        if line.strip():
                            self._on_event(json.loads(line))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # keep going: a test asserts on the outcome, not on one stream
                self.errors.append(repr(e))
            await asyncio.sleep(self.poll)

    def _on_event(self, event: dict) -> None:
        job = event.get("object") or {}
        uid = (job.get("metadata") or {}).get("uid")
        if not uid:
            return
        if event.get("type") == "DELETED":
            task = self.tasks.get(uid)
            if task is not None and not task.done():
                task.cancel()  # the Job was deleted: kill its pods' processes
            return
        done = any(c.get("status") == "True" for c in (job.get("status") or {}).get("conditions") or [])
        if uid in self.tasks or done or (job.get("spec") or {}).get("suspend"):
            return
        self.tasks[uid] = task = asyncio.create_task(self._run_job(job))
        task.add_done_callback(self._record_failure)

    def _record_failure(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(repr(task.exception()))

    # --- API --------------------------------------------------------------------------------------------------
    async def _get(self, path: str) -> dict:
        async with self.session.get(self.url + path) as r:
            r.raise_for_status()
            return await r.json()

    async def _post(self, path: str, obj: dict) -> dict:
        async with self.session.post(self.url + path, json=obj) as r:
            r.raise_for_status()
            return await r.json()

    async def _patch_status(self, path: str, status: dict) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        async with self.session.patch(self.url + path + "/status", json={"status": status}, headers=headers) as r:
            if r.status != 404:  # deleted meanwhile
                r.raise_for_status()

    # --- the Job controller -----------------------------------------------------------------------------------
    async def _run_job(self, job: dict) -> None:
        meta, spec = job["metadata"], job["spec"]
        ns, name = meta["namespace"], meta["name"]
        path = f"/apis/batch/v1/namespaces/{ns}/jobs/{name}"
        completions = int(spec.get("completions") or 1)
        await self._patch_status(path, {"startTime": NOW(), "active": completions})
        backoff = int(spec.get("backoffLimit", 6))
        failures = 0
        results: dict[int, int] = {}
        pending = list(range(completions))
        while pending:
            codes = await asyncio.gather(*(self._run_pod(job, i) for i in pending))
            retry = []
            for i, code in zip(pending, codes, strict=True):
                results[i] = code
                if code != 0:
                    failures += 1
                    if code != 2 and failures <= backoff:  # podFailurePolicy: exit 2 fails the Job at once
                        retry.append(i)
            if any(results[i] == 2 for i in pending) or failures > backoff:
                break
            pending = retry
        ok = sum(1 for c in results.values() if c == 0)
        now = NOW()
        if ok == completions:
            conditions = [{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                          {"type": "Complete", "status": "True", "lastTransitionTime": now}]  # fmt: skip
            self.completed_at[(ns, name)] = time.monotonic()  # just before the API sees it
            await self._patch_status(
                path, {"succeeded": ok, "active": 0, "completionTime": now, "conditions": conditions}
            )
        else:
            reason = "PodFailurePolicy" if 2 in results.values() else "BackoffLimitExceeded"
            conditions = [{"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": now,
                           "message": "Job has reached the specified backoff limit"}]  # fmt: skip
            await self._patch_status(path, {"succeeded": ok, "failed": failures, "active": 0, "conditions": conditions})

    async def _run_pod(self, job: dict, index: int) -> int:
        meta, template = job["metadata"], job["spec"]["template"]
        ns = meta["namespace"]
        pod_name = f"{meta['name']}-{index}-{uuid.uuid4().hex[:5]}"
        labels = {**(template.get("metadata") or {}).get("labels", {}), "batch.kubernetes.io/job-name": meta["name"],
                  "job-name": meta["name"], INDEX: str(index)}  # fmt: skip
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "labels": labels, "annotations": {INDEX: str(index)},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "spec": template["spec"],
        }  # fmt: skip
        path = f"/api/v1/namespaces/{ns}/pods/{pod_name}"
        await self._post(f"/api/v1/namespaces/{ns}/pods", pod)
        await self._patch_status(path, {"phase": "Running", "startTime": NOW()})
        root = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir))
        statuses: list[dict] = []
        init_statuses: list[dict] = []
        code = 1
        try:
            code = await self._run_containers(pod, index, root, statuses, init_statuses)
        finally:
            phase = "Succeeded" if code == 0 else "Failed"
            status = {"phase": phase, "containerStatuses": statuses}
            if init_statuses:
                status["initContainerStatuses"] = init_statuses
            with contextlib.suppress(Exception):
                await asyncio.shield(self._patch_status(path, status))
        return code

    async def _run_containers(self, pod: dict, index: int, root: Path, statuses: list, init_statuses: list) -> int:
        spec = pod["spec"]
        mounts = {}
        for v in spec.get("volumes") or []:
            if "emptyDir" in v:
                mounts[v["name"]] = root / "volumes" / v["name"]
                mounts[v["name"]].mkdir(parents=True, exist_ok=True)
        secrets, missing = await self._secrets(pod)
        if missing:
            # As a kubelet does: the pod stays Pending with a reason, until the Secret appears or the Job goes.
            waiting = {"reason": "CreateContainerConfigError", "message": f'secret "{missing}" not found'}
            path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods/{pod['metadata']['name']}"
            await self._patch_status(path, {"phase": "Pending", "containerStatuses": [
                {"name": c["name"], "ready": False, "restartCount": 0, "state": {"waiting": waiting}}
                for c in spec["containers"]]})  # fmt: skip
            while missing:
                await asyncio.sleep(0.5)
                secrets, missing = await self._secrets(pod)
        sidecars = []
        for c in spec.get("initContainers") or []:
            if c.get("restartPolicy") == "Always":
                sidecars.append(asyncio.create_task(self._container(pod, c, index, root, mounts, secrets)))
                continue
            code, st = await self._container(pod, c, index, root, mounts, secrets)
            init_statuses.append(st)
            if code != 0:
                return code
        mains = await asyncio.gather(
            *(self._container(pod, c, index, root, mounts, secrets) for c in spec["containers"])
        )
        for task in sidecars:
            try:
                _, st = await asyncio.wait_for(task, 60)
            except TimeoutError:
                st = {"name": "sidecar", "state": {"terminated": {"exitCode": 137, "reason": "Killed"}}}
            init_statuses.append(st)
        statuses.extend(st for _, st in mains)
        return next((code for code, _ in mains if code != 0), 0)

    async def _secrets(self, pod: dict) -> tuple[dict[str, dict[str, str]], str | None]:
        env: dict[str, dict[str, str]] = {}
        ns = pod["metadata"]["namespace"]
        names = {
            ref["secretRef"]["name"]
            for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
            for ref in c.get("envFrom") or []
            if "secretRef" in ref
        }
        for name in sorted(names):
            async with self.session.get(f"{self.url}/api/v1/namespaces/{ns}/secrets/{name}") as r:
                if r.status == 404:
                    return env, name
                r.raise_for_status()
                secret = await r.json()
            env[name] = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        return env, None

    def _env(self, pod: dict, c: dict, index: int, secrets: dict) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env.update(self.extra_env)
        for ref in c.get("envFrom") or []:
            if "secretRef" in ref:
                env.update(secrets[ref["secretRef"]["name"]])
        env["JOB_COMPLETION_INDEX"] = str(index)
        annotations = pod["metadata"].get("annotations") or {}
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = _expand(e["value"], env)
            elif "fieldRef" in (e.get("valueFrom") or {}):
                path = e["valueFrom"]["fieldRef"]["fieldPath"]
                m = re.match(r"metadata\.annotations\['(.+)'\]", path)
                env[e["name"]] = annotations.get(m.group(1), "") if m else ""
        return env

    async def _container(self, pod, c, index, root, mounts, secrets) -> tuple[int, dict]:
        env = self._env(pod, c, index, secrets)
        report_file = root / f"{c['name']}.termination-log"
        env["TPT_REPORT_FILE"] = str(report_file)
        started = NOW()
        args = [_expand(a, env) for a in [*(c.get("command") or []), *(c.get("args") or [])]]
        paths = {m["mountPath"]: str(mounts[m["name"]]) for m in c.get("volumeMounts") or [] if m["name"] in mounts}
        paths = {k: v for k, v in paths.items() if k not in UNMAPPED}
        args = [_remap(a, paths) for a in args]
        env = {k: _remap(v, paths) for k, v in env.items()}
        log = root / f"{c['name']}.log"
        if self.fake is not None and "tpt_stages" in args:
            code, message = await self._fake(pod, args, index)
        else:
            code = await self._process(args, env, log)
            message = report_file.read_text() if report_file.exists() else ""
        if not isinstance(message, str):
            message = json.dumps(message)
        if code != 0 and not message and log.exists():
            message = log.read_text(errors="replace")[-2048:]  # FallbackToLogsOnError
        term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "startedAt": started,
                "finishedAt": NOW(), "message": message}  # fmt: skip
        return code, {"name": c["name"], "ready": False, "restartCount": 0, "state": {"terminated": term}}

    async def _fake(self, pod: dict, args: list[str], index: int) -> tuple[int, dict | str]:
        if self.fake_seconds:
            await asyncio.sleep(self.fake_seconds)
        stage, rnd = stage_of(args)
        job = pod["metadata"]["labels"]["batch.kubernetes.io/job-name"]
        return self.fake(stage, rnd, index, job)

    async def _process(self, args: list[str], env: dict[str, str], log: Path) -> int:
        exe = {"python": [sys.executable], "accelerate": [sys.executable, "-m", "accelerate.commands.accelerate_cli"]}
        cmd = exe.get(args[0], [shutil.which(args[0]) or args[0]]) + args[1:]
        with open(log, "w") as out:
            proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                        start_new_session=True)  # fmt: skip
            try:
                return await proc.wait()
            except asyncio.CancelledError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                raise


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _remap(value: str, paths: dict[str, str]) -> str:
    for mount, host in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        if value == mount or value.startswith(mount + "/"):
            return host + value[len(mount) :]
    return value
