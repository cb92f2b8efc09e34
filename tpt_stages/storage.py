"""One storage layer for `file://` (and plain paths) and `s3://`.

A `Store` is rooted at a URI; every method takes a key relative to that root. Writes are whole-object and
atomic on both backends (S3 PUTs are; local writes go through a temporary file and a rename), so a reader never
sees half a file. Commit semantics (a stage is done when its manifest exists) live in `manifest.py`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from urllib.parse import urlparse


class StorageError(RuntimeError):
    pass


class Store(ABC):
    uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys under `prefix` (recursively), relative to the store's root, sorted."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (or the key `prefix` itself); returns how many were deleted."""

    @abstractmethod
    def upload_file(self, local: Path, key: str) -> None: ...

    @abstractmethod
    def download_file(self, key: str, local: Path) -> None: ...

    def child(self, prefix: str) -> Store:
        return open_store(f"{self.uri}/{prefix.strip('/')}")

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode()

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode())

    def upload_dir(self, local: Path, prefix: str) -> list[str]:
        keys = []
        for path in sorted(p for p in Path(local).rglob("*") if p.is_file()):
            key = f"{prefix}/{path.relative_to(local).as_posix()}"
            self.upload_file(path, key)
            keys.append(key)
        return keys

    def download_dir(self, prefix: str, local: Path) -> Path:
        for key in self.list(prefix):
            self.download_file(key, Path(local) / key[len(prefix) :].lstrip("/"))
        return Path(local)


@cache
def _umask() -> int:
    """The process's umask (reading it means setting it: once, and at once back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class LocalStore(Store):
    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.uri = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes the store root {self.root}")
        return path

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.uri}/{key}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        # mkstemp makes the file 0600: give it the mode every other file of the run gets (0644 under umask 022).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix)
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")
        )

    def delete_prefix(self, prefix: str) -> int:
        base = self._path(prefix)
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        n = sum(1 for p in base.rglob("*") if p.is_file())
        shutil.rmtree(base)
        return n

    def upload_file(self, local: Path, key: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, path)

    def download_file(self, key: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(key), local)


# Tuned for checkpoints (GBs of safetensors): large parts, many in flight. The benchmark in docs/benchmarks.md
# compares this against boto3's defaults (8 MiB parts, 10 threads).
MULTIPART_CHUNK = 64 * 1024 * 1024
MAX_CONCURRENCY = 16


@cache
def _s3_client(endpoint: str | None):
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 10, "mode": "adaptive"},
        max_pool_connections=MAX_CONCURRENCY * 2,
        connect_timeout=10,
        read_timeout=120,
        # Only checksum when the service asks: S3-compatible stores (SeaweedFS, Ceph) differ in support.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client("s3", endpoint_url=endpoint, config=config)


def transfer_config():
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_CHUNK,
        multipart_chunksize=MULTIPART_CHUNK,
        max_concurrency=MAX_CONCURRENCY,
        use_threads=True,
    )


class S3Store(Store):
    def __init__(self, uri: str, endpoint: str | None = None):
        parsed = urlparse(uri)
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.client = _s3_client(self.endpoint)

    def _key(self, key: str) -> str:
        key = key.strip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{self.uri}/{key}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def _iter(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        if full and not full.endswith("/"):
            full += "/"
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._rel(k) for k in self._iter(prefix))

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self._iter(prefix))
        if prefix and self.exists(prefix):  # a key itself, as for LocalStore
            keys.append(self._key(prefix))
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            done = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if done.get("Errors"):  # a 200 can still carry per-key failures
                first = done["Errors"][0]
                raise OSError(f"s3://{self.bucket}/{first['Key']}: {first.get('Code')}: {first.get('Message')}")
        return len(keys)

    def upload_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key), Config=transfer_config())

    def download_file(self, key: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(local).with_name(f".{Path(local).name}.part")
        self.client.download_file(self.bucket, self._key(key), str(tmp), Config=transfer_config())
        os.replace(tmp, local)


def open_store(uri: str, endpoint: str | None = None) -> Store:
    """A store rooted at `uri`: `s3://bucket/prefix`, `file:///abs`, `file://./rel` or a plain path."""
    if uri.startswith("s3://"):
        return S3Store(uri, endpoint)
    if uri.startswith("file://"):
        return LocalStore(Path(uri[len("file://") :]))
    if "://" in uri:
        raise StorageError(f"unsupported storage URI {uri!r}: use file:// or s3://")
    return LocalStore(Path(uri))


def split_uri(uri: str) -> tuple[str, str]:
    """`scheme://root/dir/name` -> (`scheme://root/dir`, `name`)."""
    head, _, name = uri.rstrip("/").rpartition("/")
    return head, name


def read_uri(uri: str) -> bytes:
    """The bytes of one file named by a full URI or path."""
    head, name = split_uri(uri)
    if "/" not in uri:
        return Path(uri).read_bytes()
    return open_store(head).read_bytes(name)


def is_remote_model(uri: str) -> bool:
    return uri.startswith("s3://")


def is_local_path(uri: str) -> bool:
    return uri.startswith(("file://", "/", "./", "../")) or Path(uri).exists()


def local_model_path(uri: str, cache_dir: Path) -> str:
    """A model reference that transformers and vLLM can load: local paths as they are, hub ids as they are
    (the libraries download and cache them), `s3://` directories downloaded once into `cache_dir`."""
    if uri.startswith("file://"):
        return str(Path(uri[len("file://") :]).resolve())
    if not uri.startswith("s3://"):
        return str(Path(uri).resolve()) if is_local_path(uri) else uri
    target = Path(cache_dir) / uri[len("s3://") :].strip("/").replace("/", "__")
    done = target / ".complete"
    if not done.exists():
        store = open_store(uri)
        store.download_dir("", target)
        done.touch()
    return str(target)
