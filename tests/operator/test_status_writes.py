"""The operator's status write (`kube.write_status`, through kopf's API client) against the real API server: what
its JSON patch's resourceVersion `test` and the CRD's status schema answer, and how each answer is told apart."""

from __future__ import annotations

import asyncio
import logging

import kopf
from kopf._cogs.clients import auth
from kopf._cogs.structs import credentials
from runs import run_doc

from tpt_operator import kube


def write(cluster, run: dict, status: dict, logger: logging.Logger) -> bool:
    async def go() -> bool:
        vault = credentials.Vault({"test": kopf.ConnectionInfo(server=cluster.url)})
        auth.vault_var.set(vault)  # what kopf's API client authenticates from, as inside the operator
        meta = run["metadata"]
        try:
            return await kube.write_status(
                "default", meta["name"], meta["resourceVersion"], status, kopf.OperatorSettings(), logger
            )
        finally:
            await vault.close()

    return asyncio.run(go())


def ours(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "test-status-writes"]


def test_a_stale_write_loses_quietly_and_a_refused_status_is_an_error_naming_the_field(cluster, caplog):
    logger = logging.getLogger("test-status-writes")
    run = cluster.create(cluster.runs_url(), run_doc("written"))
    with caplog.at_level(logging.ERROR, logger="test-status-writes"):
        assert write(cluster, run, {"phase": "Running", "round": 0}, logger)
        # The object moved on (our own write): the same resourceVersion now fails the patch's `test`.
        assert not write(cluster, run, {"phase": "Failed", "round": 0}, logger)
        assert ours(caplog) == []
        fresh = cluster.run("written")
        assert fresh["status"]["phase"] == "Running"
        assert not write(cluster, fresh, {"phase": "Exploded", "round": 0}, logger)
    assert cluster.run("written")["status"]["phase"] == "Running"
    (record,) = ours(caplog)
    assert "refused the status of default/written" in record.getMessage() and "status.phase" in record.getMessage()
