"""Storage benchmark: a checkpoint-sized upload and download through our tuned transfer configuration vs
boto3's defaults, against a real S3 server (SeaweedFS) on this machine.

    .venv/bin/python benchmarks/bench_storage.py [--mb 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import boto3
import s3server
from boto3.s3.transfer import TransferConfig

from tpt_stages import storage


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = s3server.start(Path(tmp) / "weed")
        try:
            client = storage._s3_client(s3server.ENDPOINT)
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=bucket)
            src = Path(tmp) / "blob.bin"
            src.write_bytes(os.urandom(args.mb << 20))
            configs = {"boto3 default": TransferConfig(), "tpt tuned": storage.transfer_config()}
            default_client = boto3.client("s3", endpoint_url=s3server.ENDPOINT)
            rows = []
            for name, cfg in configs.items():
                c = default_client if name == "boto3 default" else client
                up = timed(lambda c=c, cfg=cfg: c.upload_file(str(src), bucket, "blob", Config=cfg), args.repeat)
                dst = Path(tmp) / "back.bin"
                down = timed(
                    lambda c=c, cfg=cfg, dst=dst: c.download_file(bucket, "blob", str(dst), Config=cfg), args.repeat
                )
                rows.append((name, args.mb / up, args.mb / down))
        finally:
            s3server.stop(proc)
    base_up, base_down = rows[0][1], rows[0][2]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; SeaweedFS on loopback; {args.mb} MiB object, "
        f"best of {args.repeat}"
    )
    print("| configuration | upload MiB/s | download MiB/s | upload ratio | download ratio |")
    print("|---|---|---|---|---|")
    for name, up, down in rows:
        print(f"| {name} | {up:.0f} | {down:.0f} | {up / base_up:.2f}× | {down / base_down:.2f}× |")


if __name__ == "__main__":
    main()
