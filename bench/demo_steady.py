"""`qiantang demo` in steady state: CPU and RSS of the platform process with N simulated
devices, and the alarms the demo's rules raise meanwhile.

It starts ``python -m qiantang.cli demo --devices N`` on free ports in a fresh temp data
dir, waits until every device is online (indicators of the base platform), lets it warm up,
then samples for ``--seconds``:

- **platform CPU**: CPU seconds of the demo process (the platform: API, broker, store, rule
  engine, live feed; not its children) over the window, as % of one core;
- **platform RSS**: the largest resident set seen (sampled every second);
- the simulator's and the gateway's CPU (the child processes), the points stored per second
  (``points_today`` of the base platform's indicators, a count over the store), and how busy
  the whole machine was (``psutil.cpu_times``) and what of that was not the demo's (shared
  machine: read the platform figure with it);
- **alarms**: per rule, the first raise (seconds after the demo was started) and how many.

Usage: ``python bench/demo_steady.py [--devices 200] [--warmup 30] [--seconds 120]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

PASSWORD = "qiantang-demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def login(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> httpx.Client:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited with {proc.returncode}")
        try:
            r = httpx.post(f"{url}/auth/login", json={"username": "province", "password": PASSWORD})
            if r.status_code == 200:
                token = r.json()["token"]
                return httpx.Client(
                    base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit("the demo did not come up")


def cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def alarms_by_rule(client: httpx.Client, started: float) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}
    offset = 0
    while True:
        page = client.get("/alarms", params={"limit": 200, "offset": offset}).json()
        for a in page["items"]:
            first = a["raised_ms"] / 1000 - started
            seen, count = out.get(a["rule_name"], (first, 0))
            out[a["rule_name"]] = (min(seen, first), count + 1)
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds after all are online")
    parser.add_argument("--seconds", type=float, default=120.0, help="measurement window")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="qiantang-demo-bench-"))
    port, mqtt_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/api/v1"
    log = (data_dir.parent / f"{data_dir.name}.out").open("wb")
    started = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qiantang.cli",
            "demo",
            "--devices",
            str(args.devices),
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--mqtt-port",
            str(mqtt_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        client = login(url, proc)
        console_at = time.time() - started
        total = args.devices + 1  # and the gateway
        while (ind := client.get("/platforms/1/indicators").json())["devices_online"] < total:
            if time.time() - started > 300:
                raise SystemExit(f"only {ind['devices_online']}/{total} devices came online")
            time.sleep(1.0)
        online_at = time.time() - started
        time.sleep(args.warmup)
        platform = psutil.Process(proc.pid)
        children = {c.pid: c for c in platform.children(recursive=True)}
        names = {pid: " ".join(c.cmdline()[1:4]) for pid, c in children.items()}

        def machine_busy_s() -> float:
            t = psutil.cpu_times()
            return t.user + t.system + t.nice + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)

        t0, c0 = time.monotonic(), cpu_s(platform)
        k0 = {pid: cpu_s(c) for pid, c in children.items()}
        o0, p0 = machine_busy_s(), client.get("/platforms/1/indicators").json()["points_today"]
        rss = platform.memory_info().rss
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1.0)
            rss = max(rss, platform.memory_info().rss)
        elapsed = time.monotonic() - t0
        c1, o1 = cpu_s(platform), machine_busy_s()
        p1 = client.get("/platforms/1/indicators").json()["points_today"]
        child_cpu = {
            names[pid]: (cpu_s(c) - k0[pid]) / elapsed * 100 for pid, c in children.items()
        }
        alarms = alarms_by_rule(client, started)
        print(
            f"devices {args.devices} (+ gateway), all online after {online_at:.1f} s; console up after {console_at:.1f} s"
        )
        print(
            f"window {elapsed:.0f} s after a {args.warmup:.0f} s warm-up; machine: {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load average {os.getloadavg()[0]:.2f}"
        )
        print(f"platform process CPU: {(c1 - c0) / elapsed * 100:.1f} % of one core")
        print(f"platform process RSS: peak {rss / 2**20:.0f} MiB")
        for name, pct in child_cpu.items():
            print(f"child {name}: CPU {pct:.1f} % of one core")
        print(f"points stored: {(p1 - p0) / elapsed:.0f} per second")
        ours = (c1 - c0) / elapsed * 100 + sum(child_cpu.values())
        busy = (o1 - o0) / elapsed * 100
        print(f"whole machine busy: {busy:.0f} % of one core, of which others {busy - ours:.0f} %")
        print("alarms (rule: first raised s after start, count):")
        for rule, (first, count) in sorted(alarms.items(), key=lambda kv: kv[1][0]):
            print(f"  {rule}: {first:.0f} s, {count}")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    main()
