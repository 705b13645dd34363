"""Ray job entry point: ``ray job submit -- python -m apps.pipeline SPEC [--store URL]``.

Inside a submitted job ``RAY_ADDRESS`` is set, so the job joins the cluster it was submitted to and
uses the device actors its nodes host. Same options and exit codes as ``fabric run``.
"""

from __future__ import annotations

import sys

from fabric.cli.main import main


def run(argv: list[str] | None = None) -> int:
    return main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(run())
