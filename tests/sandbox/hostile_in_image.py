"""The hostile suite's runner inside the sandbox image (test_sandbox_image.py starts it there, as the verify pod
starts its grade container). Standard library and tpt_stages only: the image holds nothing else.

Reads {"limits", "cases": [{"name", "program", "stdin", "expected", "timeout"}], "witness", "canary"} as JSON
on stdin; runs every case, each followed by the witness, in one harness of the backend the pod names
($TPT_SANDBOX_BACKEND), set up as the grade phase sets it up (api.run_batch: undumpable when the harness cannot
drop uids; a harness that dies is replaced, its job an infra_error); prints {"backend", "uid", "restarts" (harnesses
replaced), "results": {name: [result, witness result, seconds past the time limit]}} as JSON on stdout.
"""

import json
import os
import sys
import time

from tpt_stages.sandbox import backends, session
from tpt_stages.sandbox.procs import PR_SET_DUMPABLE, prctl


def main() -> int:
    spec = json.load(sys.stdin)
    backend = backends.resolve(os.environ["TPT_SANDBOX_BACKEND"])
    if backend in backends.UNWRAPPED and os.geteuid() != 0:
        prctl(PR_SET_DUMPABLE, 0)  # what run_batch does before it starts harnesses
    session.HARNESS_ENV = {**backends.HARNESS_ENV, "TPT_SECRET": spec["canary"]}
    harness = session.Session(backend, spec["limits"])
    out = {}
    restarts = 0

    def run(job: dict) -> dict:
        # As api.run_batch: a harness that dies costs the job in hand an infra_error and is replaced.
        nonlocal harness, restarts
        try:
            return harness.run(job, 60)
        except session.HarnessFailed as e:
            harness = session.Session(backend, spec["limits"])
            restarts += 1
            return {"verdict": "infra_error", "detail": str(e)[-2000:], "stdout_tail": ""}

    try:
        for case in spec["cases"]:
            job = {"program": case["program"], "tests": [[case["stdin"], case["expected"]]], "timeout": case["timeout"]}
            start = time.monotonic()
            result = run(job)
            took = time.monotonic() - start - case["timeout"]
            witness = run({"program": spec["witness"], "tests": [["", "clean"]], "timeout": 5.0})
            out[case["name"]] = [result, witness, took]
    finally:
        harness.close()
    print("\n" + json.dumps({"backend": backend, "uid": os.geteuid(), "restarts": restarts, "results": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
