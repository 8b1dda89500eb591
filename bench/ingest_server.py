"""The server side of `bench/ingest.py`: start (or target) a Qiantang server on loopback,
register an enterprise, a product and N devices through the REST API, count stored points
through the API, sample the server's RSS and CPU, and profile it with py-spy.

Nothing here listens or connects anywhere but 127.0.0.1.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import httpx
import psutil

from qiantang.domain.enterprise import credit_code_check_character

__all__ = [
    "Fleet",
    "ServerHandle",
    "fleet_model",
    "free_port",
    "raise_nofile",
    "register_fleet",
    "start_server",
    "target_server",
]

LOOPBACK = "127.0.0.1"
OPERATOR_PASSWORD = "bench-operator-pw"
ADMIN_PASSWORD = "bench-admin-pw"
START_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 120.0


def raise_nofile() -> int:
    """Raise this process's soft open-file limit to its hard limit; answer the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing to load {url}: the bench only targets 127.0.0.1")


# --------------------------------------------------------------------------- the server


@dataclass
class ServerHandle:
    """A server the bench talks to: started by it (`proc` set) or targeted (`proc` None)."""

    url: str  # http://127.0.0.1:port
    mqtt_port: int
    operator_key: str
    base_id: int
    pid: int | None
    data_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    tmp: Path | None = None  # removed by `cleanup`
    timezone: str = "Asia/Shanghai"

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.operator_key}"}
        return httpx.Client(base_url=self.api, headers=headers, timeout=HTTP_TIMEOUT_S)

    def process(self) -> psutil.Process | None:
        return psutil.Process(self.pid) if self.pid else None

    def rss_bytes(self) -> int:
        p = self.process()
        return p.memory_info().rss if p else 0

    def cpu_seconds(self) -> float:
        p = self.process()
        if p is None:
            return 0.0
        t = p.cpu_times()
        return float(t.user + t.system)

    def num_fds(self) -> int:
        p = self.process()
        return p.num_fds() if p else 0

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful stop: the store flushes and closes), bounded wait."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def cleanup(self) -> None:
        """Stop the server and remove its temp dir (data and log)."""
        self.stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def tail_log(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "qiantang.cli", *args]


# An experiment hook, not the default: run ``qiantang serve`` under a launcher that can set
# the cyclic GC's thresholds and log what the collector costs (gc.callbacks), to test a
# what-if without touching src/. The summary lines go to the server log every 10 s.
_GC_LAUNCHER = """
import gc, sys, threading, time
threshold = {threshold!r}
if threshold:
    gc.set_threshold(*threshold)
if {stats!r}:
    spent = [0.0, 0.0, 0.0]; count = [0, 0, 0]; began = [0.0]
    def cb(phase, info):
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            g = info["generation"]; spent[g] += time.perf_counter() - began[0]; count[g] += 1
    gc.callbacks.append(cb)
    def report():
        t0 = time.monotonic()
        for _ in range(100_000):
            time.sleep(10)
            el = time.monotonic() - t0
            print("gc-stats after %.0f s: " % el + ", ".join(
                "gen%d %d runs %.0f ms (%.1f%% of wall)" % (g, count[g], spent[g] * 1e3,
                100 * spent[g] / el) for g in range(3)), flush=True)
            if {types!r}:
                from collections import Counter
                objs = gc.get_objects()
                top = Counter(type(o).__qualname__ for o in objs).most_common(8)
                print("gc-types: %d tracked objects; " % len(objs) + ", ".join(
                    "%s %d" % kv for kv in top), flush=True)
                sized = []
                for o in objs:
                    if type(o) in (list, dict, set, tuple) or type(o).__name__ == "deque":
                        sized.append((len(o), type(o).__name__))
                sized.sort(reverse=True)
                refs = sum(n for n, _ in sized)
                print("gc-sizes: %d references in containers; largest: %s" % (refs, sized[:6]),
                      flush=True)
                t = time.perf_counter(); gc.collect(); full = time.perf_counter() - t
                print("gc-full: gc.collect() took %.0f ms" % (full * 1e3), flush=True)
                del objs, sized
    threading.Thread(target=report, daemon=True).start()
from qiantang.cli.main import app
sys.argv = ["qiantang", "serve"]
app()
"""


def start_server(
    extra_env: dict[str, str] | None = None,
    gc_threshold: tuple[int, ...] | None = None,
    gc_stats: bool | str = False,
) -> ServerHandle:
    """Bootstrap a fresh data dir and run ``qiantang serve`` on free loopback ports, with the
    per-device rate limit raised out of the way. The child inherits our open-file limit.
    `gc_threshold` / `gc_stats`: the GC experiment hook (see `_GC_LAUNCHER`); ``gc_stats=
    "types"`` also counts the tracked objects by type every 10 s (slow: diagnosis only)."""
    raise_nofile()
    tmp = Path(tempfile.mkdtemp(prefix="qiantang-bench-"))
    data_dir = tmp / "data"
    http_port, mqtt_port, tls_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "QIANTANG_DATA_DIR": str(data_dir),
        "QIANTANG_HOST": LOOPBACK,
        "QIANTANG_PORT": str(http_port),
        "QIANTANG_MQTT_HOST": LOOPBACK,
        "QIANTANG_MQTT_PORT": str(mqtt_port),
        "QIANTANG_MQTT_TLS_PORT": str(tls_port),
        "QIANTANG_DEVICE_RATE_PER_S": "1000000",
        "QIANTANG_DEVICE_BURST": "1000000",
        **(extra_env or {}),
    }
    done = subprocess.run(
        _cli("admin", "bootstrap", "--password", OPERATOR_PASSWORD),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    key = re.search(r"API key \(shown once\): (\S+)", done.stdout)
    base = re.search(r"base platform id (\d+)", done.stdout)
    if done.returncode != 0 or key is None or base is None:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError("qiantang admin bootstrap failed: " + " | ".join(tail))
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        cmd = _cli("serve")
        if gc_threshold or gc_stats:
            code = _GC_LAUNCHER.format(
                threshold=gc_threshold, stats=bool(gc_stats), types=gc_stats == "types"
            )
            cmd = [sys.executable, "-c", code]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    handle = ServerHandle(
        url=f"http://{LOOPBACK}:{http_port}",
        mqtt_port=mqtt_port,
        operator_key=key.group(1),
        base_id=int(base.group(1)),
        pid=proc.pid,
        data_dir=data_dir,
        proc=proc,
        log_path=log_path,
        tmp=tmp,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited at start:\n{handle.tail_log()}")
        with contextlib.suppress(httpx.HTTPError, OSError):
            ok = httpx.get(handle.url + "/healthz", timeout=2).status_code == 200
            with socket.create_connection((LOOPBACK, mqtt_port), timeout=2):
                pass
            if ok:
                return handle
        if time.monotonic() > deadline:
            handle.cleanup()
            raise RuntimeError("server did not start in time")
        time.sleep(0.1)


def target_server(url: str, mqtt_port: int, api_key: str, pid: int | None) -> ServerHandle:
    """A server someone else runs (loopback only); `api_key` must be an operator's key."""
    check_loopback(url)
    with httpx.Client(
        base_url=url + "/api/v1", headers={"Authorization": f"Bearer {api_key}"}, timeout=30
    ) as c:
        platforms = c.get("/platforms", params={"limit": 100}).raise_for_status().json()
    base = next((p for p in platforms["items"] if p["parent_id"] is None), None)
    if base is None:
        raise SystemExit("the API key does not see the base platform: use an operator's key")
    return ServerHandle(url.rstrip("/"), mqtt_port, api_key, int(base["id"]), pid)


# --------------------------------------------------------------------------- the fleet


def fleet_model(props: int) -> dict[str, Any]:
    """A thing model of `props` float properties p0..p{n-1}. p0 carries the publisher's send
    time (ms since the epoch) in the latency scenarios, hence its wide range."""
    return {
        "properties": [
            {
                "identifier": f"p{i}",
                "name": f"测点{i}",
                "access_mode": "r",
                "data_type": {
                    "type": "double",
                    "specs": {"min": -1e15, "max": 1e15, "unit": "°C"},
                },
            }
            for i in range(props)
        ],
        "events": [],
        "services": [],
    }


@dataclass
class Fleet:
    """An enterprise with one product and its devices, and an admin's token."""

    enterprise_id: int
    product_id: int
    product_key: str
    token: str
    devices: list[tuple[int, str, str]] = field(default_factory=list)  # (id, name, secret)
    register_s: float = 0.0


_RUN_TAG = Counter[str]()


def _credit_code(seed: int) -> str:
    body = f"91330100MA{seed % 10**7:07d}"
    return body + credit_code_check_character(body)


def register_fleet(
    server: ServerHandle, name: str, devices: int, props: int, workers: int = 8
) -> Fleet:
    """Through the REST API: an enterprise, its admin (logged in), a product of `props`
    float properties, and `devices` devices (registered by `workers` concurrent clients)."""
    _RUN_TAG[name] += 1
    tag = f"{name}{_RUN_TAG[name]}-{os.getpid() % 10000}-{int(time.time()) % 100000}"
    with server.client() as op:
        ent = op.post(
            "/enterprises",
            json={
                "name": f"压测企业-{tag}",
                "credit_code": _credit_code(hash(tag) & 0x7FFFFFFF),
                "industry_code": "C34",
                "region_code": "330100",
                "home_platform_id": server.base_id,
            },
        )
        ent.raise_for_status()
        enterprise_id = int(ent.json()["id"])
        username = f"bench-{tag}"[:64]
        op.post(
            "/users",
            json={
                "username": username,
                "password": ADMIN_PASSWORD,
                "role": "admin",
                "enterprise_id": enterprise_id,
            },
        ).raise_for_status()
    with httpx.Client(base_url=server.api, timeout=HTTP_TIMEOUT_S) as anon:
        login = anon.post("/auth/login", json={"username": username, "password": ADMIN_PASSWORD})
        token = login.raise_for_status().json()["token"]
    with server.client(token) as admin:
        product = admin.post(
            "/products",
            json={
                "enterprise_id": enterprise_id,
                "name": f"压测产品-{tag}"[:60],
                "thing_model": fleet_model(props),
            },
        )
        product.raise_for_status()
    fleet = Fleet(enterprise_id, int(product.json()["id"]), product.json()["product_key"], token)
    begin = time.monotonic()
    fleet.devices = _register_devices(server, fleet, devices, workers)
    fleet.register_s = time.monotonic() - begin
    return fleet


def _register_devices(
    server: ServerHandle, fleet: Fleet, count: int, workers: int
) -> list[tuple[int, str, str]]:
    local = threading.local()

    def one(i: int) -> tuple[int, str, str]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = server.client(fleet.token)
        r = client.post(
            "/devices", json={"product_id": fleet.product_id, "device_name": f"DEV-{i:05d}"}
        )
        r.raise_for_status()
        body = r.json()
        return int(body["id"]), str(body["device_name"]), str(body["device_secret"])

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(count)))


# --------------------------------------------------------------------------- observing


def day_start_ms(timezone: str) -> int:
    now = datetime.now(ZoneInfo(timezone))
    return int(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def stored_points(server: ServerHandle, client: httpx.Client, enterprise_id: int) -> int:
    """Points of the enterprise's devices timestamped today, counted by the server over its
    store (``GET /platforms/{base}/indicators``: what is stored and queryable)."""
    r = client.get(f"/platforms/{server.base_id}/indicators")
    r.raise_for_status()
    body = r.json()
    # the base's own figures cover the enterprises homed at it; we want one enterprise, but
    # the indicators count per platform: bench enterprises are all homed at the base, and
    # each scenario measures differences, so the base's `own` figure serves
    return int(body["own"]["points_today"])


@dataclass
class Sampler:
    """Samples the server's RSS and CPU every `period_s` on a thread, until stopped."""

    server: ServerHandle
    period_s: float = 0.5
    samples: list[tuple[float, int, float]] = field(default_factory=list)  # (t, rss, cpu)
    machine: list[tuple[float, float, float]] = field(default_factory=list)  # (wall, busy, all)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        deadline = time.monotonic() + 3_600
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                self.samples.append(
                    (time.monotonic(), self.server.rss_bytes(), self.server.cpu_seconds())
                )
            t = psutil.cpu_times()
            idle = t.idle + getattr(t, "iowait", 0.0)
            total = sum(t)
            self.machine.append((time.time(), total - idle, total))
            self._stop.wait(self.period_s)

    def machine_busy(self, t0_wall: float, t1_wall: float) -> float:
        """Percent of all CPUs busy (any process) between two wall times."""
        inside = [m for m in self.machine if t0_wall <= m[0] <= t1_wall]
        if len(inside) < 2:
            return float("nan")
        busy = inside[-1][1] - inside[0][1]
        total = inside[-1][2] - inside[0][2]
        return 100.0 * busy / total if total else float("nan")

    def peak_rss(self) -> int:
        return max((s[1] for s in self.samples), default=0)

    def cpu_share(self, t0: float, t1: float) -> float:
        """Server CPU seconds per wall second between t0 and t1 (1.0 = one core)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return float("nan")
        return (inside[-1][2] - inside[0][2]) / max(inside[-1][0] - inside[0][0], 1e-9)


def _ours() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(c.pid for c in me.children(recursive=True))}


def _cpu_table() -> dict[int, tuple[str, float]]:
    table: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times = p.info.get("cpu_times")
        if times is None:
            continue
        cmd = " ".join((p.info.get("cmdline") or [])[:4]) or (p.info.get("name") or "?")
        table[p.pid] = (cmd[:80], float(times.user + times.system))
    return table


@dataclass
class ForeignCpu:
    """CPU used by processes that are not this bench or its children (another session's
    tests on a shared machine) between `start` and `stop`."""

    began: float = 0.0
    before: dict[int, tuple[str, float]] = field(default_factory=dict)

    def start(self) -> None:
        self.began, self.before = time.monotonic(), _cpu_table()

    def stop(self) -> tuple[float, str]:
        """(share of one core, the top consumer)."""
        elapsed = max(time.monotonic() - self.began, 1e-9)
        ours = _ours()
        used: list[tuple[float, str]] = []
        for pid, (cmd, cpu) in _cpu_table().items():
            if pid in ours:
                continue
            used.append((cpu - self.before.get(pid, (cmd, 0.0))[1], cmd))
        total = sum(u for u, _ in used)
        top = max(used, default=(0.0, ""))
        return total / elapsed, f"{top[1]} ({top[0] / elapsed:.0%})" if top[0] > 0 else ""


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- profiling


@dataclass
class Profiler:
    """``py-spy record`` of the server for `seconds` (raw collapsed stacks), in the
    background; `report` summarises where the time went in qiantang frames."""

    server: ServerHandle
    out_dir: Path
    label: str
    seconds: float
    gil: bool = False
    rate: int = 100
    proc: subprocess.Popen[bytes] | None = None
    path: Path | None = None

    def start(self) -> None:
        exe = shutil.which("py-spy")
        if exe is None or self.server.pid is None:
            print("  (profile skipped: py-spy not installed or no server pid)")
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.out_dir / f"{self.label}{'-gil' if self.gil else ''}.txt"
        cmd = [
            exe,
            "record",
            "--pid",
            str(self.server.pid),
            "--duration",
            str(max(1, int(self.seconds))),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(self.path),
        ]
        if self.gil:
            cmd.append("--gil")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self) -> Path | None:
        if self.proc is None:
            return None
        try:
            self.proc.wait(self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        return self.path if self.path and self.path.exists() else None
