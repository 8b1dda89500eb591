"""Summaries of a ``py-spy record --format raw --threads`` profile for `bench/ingest.py`.

    python bench/ingest_profile.py PROFILE.txt [--top 25]

py-spy's raw format is one collapsed stack per line, ``thread (TID): NAME;frame;frame N``,
each frame ``function (path:line)``. Printed:

- samples per thread (the event loop is ``MainThread``; ``AnyIO worker thread`` runs sync
  endpoints and ``run_in_threadpool``; ``asyncio_N`` / ``ThreadPoolExecutor`` run
  ``asyncio.to_thread``; ``qiantang-duckdb-*`` are the store's threads);
- per qiantang function (``qiantang/...`` frames, line numbers merged): *own* = samples whose
  deepest qiantang frame is this function (time in it and in the libraries it calls, but
  not in deeper qiantang functions) and *incl* = samples with it anywhere on the stack;
- the library frames that are the leaves of the most samples (where the CPU actually is).

Percentages are of all samples of non-idle Python threads. DuckDB's own native worker
threads are invisible to py-spy: `thread_cpu` reads every thread's CPU time from /proc.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Profile", "load", "thread_cpu"]

_LINE = re.compile(r"^thread \((?P<tid>\d+)\): (?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw)
    if m is None:
        return raw, ""
    return m.group("func"), m.group("path")


def _label(func: str, path: str) -> str:
    return f"{path}:{func}" if path else func


@dataclass
class Profile:
    total: int = 0
    idle: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    tids: dict[int, str] = field(default_factory=dict)
    own: Counter[str] = field(default_factory=Counter)
    incl: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)

    def pct(self, n: int) -> float:
        return 100.0 * n / self.total if self.total else 0.0

    def report(self, top: int = 20, thread_seconds: dict[str, float] | None = None) -> str:
        lines = [
            f"{self.total} busy samples of Python threads ({self.idle} idle samples dropped: "
            "threads waiting in select/wait/get)"
        ]
        lines.append("samples by thread:")
        for name, n in self.threads.most_common(8):
            cpu = ""
            if thread_seconds and name in thread_seconds:
                cpu = f", {thread_seconds[name]:.1f} CPU s"
            lines.append(f"  {self.pct(n):5.1f}%  {name}{cpu}")
        if thread_seconds:
            for name, secs in sorted(thread_seconds.items(), key=lambda kv: -kv[1]):
                if name not in self.threads:
                    lines.append(f"     -    {name}: {secs:.1f} CPU s")
        lines.append(
            "qiantang functions (own = deepest qiantang frame, with the libraries it calls):"
        )
        lines.append("   own%  incl%  function")
        for name, n in self.own.most_common(top):
            lines.append(f"  {self.pct(n):5.1f}  {self.pct(self.incl[name]):5.1f}  {name}")
        lines.append("leaf frames (where the CPU is):")
        for name, n in self.leaves.most_common(top):
            lines.append(f"  {self.pct(n):5.1f}%  {name}")
        return "\n".join(lines)


_IDLE_LEAVES = {
    "selectors.py:EpollSelector.select",
    "selectors.py:PollSelector.select",
    "threading.py:Condition.wait",
    "threading.py:Event.wait",
    "threading.py:Thread.join",
    "queue.py:Queue.get",
    "concurrent/futures/thread.py:_worker",
    "asyncio/tasks.py:sleep",
    "asyncio/base_events.py:BaseEventLoop.run_forever",
}
_STDLIB = sys.stdlib_module_names


def _package(path: str) -> str:
    return path.split("/", 1)[0].removesuffix(".py")


_RUNNERS = (
    "qiantang/cli/",
    "typer/",
    "click/",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
)


def _outside_owner(frames: list[tuple[str, str]]) -> str:
    """For a stack with no qiantang frame: the deepest third-party package on it that is not
    just the process's entry point (uvicorn's server loop runs everything)."""
    for _func, path in reversed(frames):
        pkg = _package(path)
        if not path or pkg in _STDLIB or path.startswith(("<", *_RUNNERS)):
            continue
        return f"[{pkg}] (no qiantang frame)"
    return "[asyncio/stdlib only] (no qiantang or library frame)"


def _role(name: str, labels: list[str]) -> str:
    """What a thread does, from its stack (py-spy's thread names are not reliable: it can
    report a reused thread id under an older name)."""
    joined = ";".join(labels)
    if "duckdb_store.py:_Writer" in joined:
        return "store writer thread (qiantang-duckdb-writer)"
    if "duckdb_store.py:DuckDBTimeSeriesStore._fetch" in joined:
        return "store query pool (qiantang-duckdb-query-N)"
    if "anyio/_backends/_asyncio.py:WorkerThread.run" in joined:
        return "AnyIO worker threads (sync endpoints, run_in_threadpool)"
    if name == "MainThread":
        return "event loop (MainThread: uvicorn, FastAPI, amqtt, handover)"
    if "concurrent/futures/thread.py:_worker" in joined:
        return "asyncio.to_thread pool"
    return re.sub(r"[-_]\d+$", "-N", name)


def load(path: Path) -> Profile:
    prof = Profile()
    roles: dict[int, Counter[str]] = {}
    for raw in path.read_text(errors="replace").splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        count = int(m.group("count"))
        parts = m.group("stack").split(";")
        frames = [_frame(p) for p in parts[1:]]
        labels = [_label(f, p) for f, p in frames]
        thread = _role(parts[0], labels)
        roles.setdefault(int(m.group("tid")), Counter())[thread] += count
        if not frames or labels[-1] in _IDLE_LEAVES:
            prof.idle += count
            continue
        prof.total += count
        prof.threads[thread] += count
        prof.leaves[labels[-1]] += count
        ours = [
            _label(f, p)
            for f, p in frames
            if p.startswith("qiantang/") and not p.startswith("qiantang/cli/")
        ]
        if ours:
            prof.own[ours[-1]] += count
            for name in set(ours):
                prof.incl[name] += count
        else:
            prof.own[_outside_owner(frames)] += count
    prof.tids = {tid: c.most_common(1)[0][0] for tid, c in roles.items()}
    return prof


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of `pid`, from /proc (Linux)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    task = Path(f"/proc/{pid}/task")
    try:
        tids = [int(t.name) for t in task.iterdir()]
    except OSError:
        return out
    for tid in tids:
        try:
            stat = (task / str(tid) / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_by_thread_name(
    before: dict[int, float], after: dict[int, float], names: dict[int, str]
) -> dict[str, float]:
    """CPU seconds between two `thread_cpu` snapshots, grouped by py-spy thread name; threads
    py-spy never saw (DuckDB's native workers) are grouped as native."""
    grouped: Counter[str] = Counter()
    for tid, secs in after.items():
        used = secs - before.get(tid, 0.0)
        if used > 0:
            grouped[names.get(tid, "native threads (DuckDB, no Python frames)")] += used
    return {k: round(v, 2) for k, v in grouped.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(load(args.profile).report(args.top))


if __name__ == "__main__":
    main()
