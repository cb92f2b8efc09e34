"""The code sandbox: runs model-written programs against input/output tests and judges them.

    from tpt_stages.sandbox import Limits, ProgramJob, ProgramResult, run_batch, available_backends

See docs/sandbox.md for the threat model. The public names load lazily (PEP 562) because the harness imports
this package inside the sandbox, where it must stay stdlib-only and quick to start: `api` pulls in pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tpt_stages.sandbox.api import Limits, ProgramJob, ProgramResult, run_batch
    from tpt_stages.sandbox.backends import available_backends

__all__ = ["Limits", "ProgramJob", "ProgramResult", "available_backends", "run_batch"]


def __getattr__(name: str) -> Any:
    if name == "available_backends":
        from tpt_stages.sandbox import backends

        return backends.available_backends
    if name in __all__:
        from tpt_stages.sandbox import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
