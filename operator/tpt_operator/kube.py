"""The few Kubernetes API calls the operator makes, through kopf's own API client.

Why kopf's client and not the `kubernetes` package: kopf already holds an authenticated aiohttp session (in
cluster: the service account; elsewhere: the kubeconfig, read when the operator starts rather than when a
module is imported), retries throttling and server errors with backoff, and is async, so 200 concurrent runs
cost no threads. The sync `kubernetes` client would need a thread per call and validates bodies with its own
models; `kubernetes_asyncio` is not a dependency. kopf's API functions live in a private module, which is why
kopf is pinned exactly and why every call goes through this one file.

Every call is idempotent, as an operator restarted at any instant needs: creating an object that exists (409)
and deleting one that is gone (404) both count as success; a status write carries the resourceVersion it was
computed from (a JSON-patch `test`), so a reconcile working from a stale view loses instead of overwriting.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kopf._cogs.clients import api, errors
from kopf._cogs.configs.configuration import OperatorSettings

from tpt_operator import GROUP, PLURAL, VERSION

Logger = logging.Logger | logging.LoggerAdapter

_PLURALS = {("batch/v1", "Job"): "jobs", ("v1", "Service"): "services", ("v1", "Pod"): "pods"}


def collection_url(api_version: str, kind_plural: str, namespace: str) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{kind_plural}"


def object_url(obj: Mapping[str, Any]) -> str:
    plural = _PLURALS[(obj["apiVersion"], obj["kind"])]
    return collection_url(obj["apiVersion"], plural, obj["metadata"]["namespace"])


async def create(obj: Mapping[str, Any], settings: OperatorSettings, logger: Logger) -> bool:
    """Create with the exact name; True if created now, False if it already existed."""
    try:
        await api.post(object_url(obj), payload=obj, settings=settings, logger=logger)
        return True
    except errors.APIConflictError:
        return False


async def delete(
    api_version: str, plural: str, namespace: str, name: str, settings: OperatorSettings, logger: Logger
) -> bool:
    """Delete with propagationPolicy Background (the Job goes now, its pods right after); False if gone."""
    url = f"{collection_url(api_version, plural, namespace)}/{name}"
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
    try:
        await api.delete(url, payload=body, settings=settings, logger=logger)
        return True
    except errors.APINotFoundError:
        return False


async def write_status(
    namespace: str, name: str, resource_version: str | None, status: dict[str, Any], settings: OperatorSettings,
    logger: Logger,
) -> bool:  # fmt: skip
    """Replace the run's status if the object is still at `resource_version`; False if it moved on or is gone,
    or if the API server refused the status itself (logged as an error with the server's reason: it names the
    field, and no later reconcile can get past it either)."""
    url = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status"
    ops: list[dict[str, Any]] = []
    if resource_version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})
    ops.append({"op": "add", "path": "/status", "value": status})
    try:
        await api.patch(
            url, payload=ops, headers={"Content-Type": "application/json-patch+json"}, settings=settings, logger=logger
        )
        return True
    except errors.APIUnprocessableEntityError as e:
        # A failed `test` (the race lost) is a 422 that names no field; a status the schema refuses names one.
        if (e.details or {}).get("causes"):
            logger.error("the API server refused the status of %s/%s: %s", namespace, name, e.message)
        return False
    except (errors.APIConflictError, errors.APINotFoundError):
        return False
