"""`tpt-operator`: run the kopf operator with the configuration from $TPT_OPERATOR_CONFIG and TPT_* variables.

One replica (kopf has no leader election; the chart uses `strategy: Recreate`), standalone (no kopf peering
objects), watching `watchNamespaces` or the whole cluster. Liveness/readiness: kopf's endpoint on healthPort
(`/healthz`); metrics: Prometheus on metricsPort.
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from tpt_operator.config import load


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tpt-operator", description=__doc__)
    p.add_argument("--config", help="YAML file (default: $TPT_OPERATOR_CONFIG or /etc/tpt-operator/config.yaml)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.config:
        import os

        os.environ["TPT_OPERATOR_CONFIG"] = args.config
    config = load(args.config)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    import tpt_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        standalone=True,
        clusterwide=not config.watch_namespaces,
        namespaces=config.watch_namespaces,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
