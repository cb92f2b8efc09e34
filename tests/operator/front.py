"""One Kubernetes API endpoint over two servers: our own objects on a real API server, the rest in the emulator.

No kube-apiserver can be had here (FACTS.md), but Kubernetes' apiextensions-apiserver can: it serves the
CustomResourceDefinitions and the custom resources, nothing else, not even `/api` or `/apis` discovery. The
operator needs both halves at one address (one kubeconfig): its SelfImprovementRuns, which the real server
should judge (schema, defaulting, status subresource, resourceVersion preconditions, finalizers, watches), and
Jobs, Pods, Events and Secrets, which only the emulator can hold. So this front sends every path of the real
server's groups there, everything else to the emulator, and answers `/apis` with both lists merged. Bodies are
streamed through unchanged, watches included; clients (kopf, `kubernetes`, `requests`) see one server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl

import aiohttp
from aiohttp import web

# The real server's groups: ours and the CRDs' (kopf watches CRDs to notice new resources).
REAL_GROUPS = ("tpt.dev", "apiextensions.k8s.io")
# Hop-by-hop or rewritten by this hop; the front authenticates to the real server with its own client cert.
DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host",
           "authorization", "accept-encoding"}  # fmt: skip


def real_group(path: str, groups: tuple[str, ...] = REAL_GROUPS) -> bool:
    """`/apis/<group>...` of one of the real server's groups."""
    parts = path.split("/")
    return len(parts) > 2 and parts[1] == "apis" and parts[2] in groups


class Front:
    """An aiohttp server on loopback; start and stop it on the event loop that should serve it."""

    def __init__(self, emulator_url: str, real_url: str, real_ssl: ssl.SSLContext, groups=REAL_GROUPS) -> None:
        self.emulator_url, self.real_url, self.real_ssl = emulator_url.rstrip("/"), real_url.rstrip("/"), real_ssl
        self.groups = tuple(groups)
        self.url = ""
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        # No total timeout: a watch lasts as long as its client asks (`timeoutSeconds`).
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=True)
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{path:.*}", self._handle)
        # A client that goes away (a killed operator) cancels its handler, which closes the upstream stream.
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path.rstrip("/") == "/apis":
            return await self._apis(request)
        real = real_group(request.path, self.groups)
        base, sslctx = (self.real_url, self.real_ssl) if real else (self.emulator_url, None)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        body = await request.read()
        try:
            upstream = await self._session.request(
                request.method, base + request.rel_url.raw_path_qs, headers=headers, data=body or None, ssl=sslctx
            )
        except aiohttp.ClientError as e:
            return _status(502, "BadGateway", f"{'real server' if real else 'emulator'}: {e!r}")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                if k.lower() not in DROPPED:
                    response.headers.add(k, v)
            try:
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)  # each chunk at once: a watch event must not wait for the next
                await response.write_eof()
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionResetError):
                pass  # either side went away mid-stream: end ours, as a server restart would
            return response

    async def _apis(self, request: web.Request) -> web.Response:
        """The emulator's groups, less those the real server owns, plus the real server's own group documents."""
        async with self._session.get(self.emulator_url + "/apis") as r:
            r.raise_for_status()
            merged = await r.json()
        merged["groups"] = [g for g in merged["groups"] if g["name"] not in self.groups]
        for group in self.groups:
            async with self._session.get(f"{self.real_url}/apis/{group}", ssl=self.real_ssl) as r:
                if r.status == 200:  # tpt.dev appears once its CRD is established
                    merged["groups"].append(await r.json())
        return web.json_response(merged)


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}  # fmt: skip
    return web.Response(status=code, text=json.dumps(body), content_type="application/json")
