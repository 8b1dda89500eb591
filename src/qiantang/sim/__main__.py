"""`python -m qiantang.sim PLAN.json`: run a fleet plan until SIGTERM or SIGINT (or until the
process that started it is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from qiantang.sim.fleet import Fleet
from qiantang.sim.plan import read_plan

__all__ = ["main"]

log = logging.getLogger("qiantang.sim")


async def _watch_parent(parent: int) -> None:
    """Return once the parent process has gone (we were re-parented)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)


async def _run(plan_path: Path) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    fleet = asyncio.create_task(Fleet(read_plan(plan_path)).run())
    watch = asyncio.create_task(_watch_parent(os.getppid()))
    try:
        done, _ = await asyncio.wait({fleet, watch}, return_when=asyncio.FIRST_COMPLETED)
        if fleet in done:
            fleet.result()
        else:
            log.warning("the demo process is gone: stopping")
    finally:
        for t in (fleet, watch):
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(fleet, watch, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m qiantang.sim PLAN.json", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=os.environ.get("QIANTANG_SIM_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_run(Path(args[0])))
    log.info("simulator stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
