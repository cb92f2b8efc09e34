"""What stage processes import, imported once in `tpt run`'s fork server (`launcher.py`) before it forks.

The heavy imports of every stage: the think stage's vLLM (its engine, CPU worker and Llama model modules,
which `LLM(...)` would otherwise import lazily) and transformers, the train stage's TRL, datasets and
accelerate. A library that is not installed is skipped (vLLM does not install everywhere), and so is one that
fails to import: the stage that needs it then fails on its own import, with the error in its log.

Some of them set environment variables while being imported (vLLM sets a few for torch; TRL sets vLLM's log
level): `SET_BY_IMPORTS` keeps those, so a forked stage, whose environment the launcher replaces with the
one `tpt run` gives it, sees what it would have seen after importing them itself; `PRINTED_BY_IMPORTS`
keeps what they printed, which the launcher writes at the top of each stage's log, where a fresh process
would have printed it.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import os
import sys
import tempfile

MODULES = (
    "torch",
    # vLLM before TRL: importing TRL sets VLLM_LOGGING_LEVEL=ERROR, which would silence a think stage's log.
    "vllm",
    "vllm.entrypoints.llm",
    "vllm.v1.engine.llm_engine",
    "vllm.v1.engine.core",
    "vllm.v1.executor.uniproc_executor",
    "vllm.v1.worker.cpu_worker",
    "vllm.model_executor.models.llama",
    "vllm.model_executor.model_loader",
    "vllm.v1.core.kv_cache_manager",
    "compressed_tensors",  # vLLM's model loader imports it for every model
    "transformers",
    "transformers.models.llama.modeling_llama",
    "datasets",
    "accelerate",
    "trl",
    "trl.trainer.sft_trainer",
    "tpt_stages.engines",
    "tpt_stages.trainer",
    "tpt_stages.stage",
    "tpt_stages.stages.prepare",
    "tpt_stages.stages.think",
    "tpt_stages.stages.verify",
    "tpt_stages.stages.score",
    "tpt_stages.stages.select",
    "tpt_stages.stages.train",
)


def _import_all() -> tuple[dict[str, str], str]:
    """Import MODULES; return the environment variables they set and what they printed (at the descriptor
    level, so native libraries' lines too), which belongs in each stage's log rather than in `tpt run`'s
    terminal."""
    before = dict(os.environ)
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as out:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            for name in MODULES:
                # Not installed, or broken here: the stage that needs it fails on its own import, in its log.
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        out.seek(0)
        printed = out.read().decode(errors="replace")
    return {k: v for k, v in os.environ.items() if before.get(k) != v}, printed


def _imported_by_the_fork_server() -> bool:
    from multiprocessing import forkserver

    frame = sys._getframe()
    while frame is not None and frame.f_code is not forkserver.main.__code__:
        frame = frame.f_back
    return frame is not None


def _leave_without_finalizing(server: int) -> None:
    """The fork server ends with `tpt run`, and finalizing its interpreter only makes triton's bindings
    (imported with vLLM) list hundreds of "leaked" objects on `tpt run`'s terminal: nothing in the server
    needs finalizing. Its children inherit this exit handler and exit as usual."""
    if os.getpid() == server:
        os._exit(0)


SET_BY_IMPORTS, PRINTED_BY_IMPORTS = _import_all()
if _imported_by_the_fork_server():
    atexit.register(_leave_without_finalizing, os.getpid())
# Out of the collector's sight: a stage's gc.collect() (vLLM calls it five times while loading) then skips the
# millions of objects these imports made (1.5 s a think stage on 2 cores), and the children's collections do
# not write to, and so copy, the pages they share with the server.
gc.freeze()
