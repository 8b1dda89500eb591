"""README command 1 on a clean slate: install into a new virtual environment, run
`qiantang demo`, and time it until the console answers and live data arrives.

    python bench/demo_first_run.py              # a new venv in a temp dir, pip cache off
    python bench/demo_first_run.py --keep DIR   # keep the venv and data dir in DIR

Steps timed: ``python -m venv``, ``pip install --no-cache-dir -e '.[edge]'`` of this
checkout, then ``qiantang demo --data-dir D`` (fresh data dir, default ports 8000 and 1883,
which must be free) until ``GET /`` answers 200 (the console) and until the base platform's
indicators, read as the demo's ``province`` user, show points stored today. Ctrl-C (SIGINT)
then stops the demo; its exit code is printed. Target (issue 7): < 120 s from the start of
the install to live data. Loopback only; the packages come from the registry pip is set up
for on this machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:8000"
PASSWORD = "qiantang-demo"


def until(what: str, check: object, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if proc.poll() is not None:
            raise SystemExit(f"the demo exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="qt-first-run-"))
    venv, data = work / "venv", work / "demo-data"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--no-cache-dir", "-e", f"{ROOT}[edge]"], check=True)
    installed = time.monotonic() - t0
    log = (work / "demo.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(venv / "bin" / "qiantang"), "demo", "--data-dir", str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client = httpx.Client(base_url=URL, timeout=5)
    try:

        def console() -> bool:
            try:
                return client.get("/").status_code == 200
            except httpx.HTTPError:
                return False

        until("the console answered", console, 120, proc)
        console_s = time.monotonic() - started
        token = client.post(
            "/api/v1/auth/login", json={"username": "province", "password": PASSWORD}
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        figures: dict[str, object] = {}

        def live() -> bool:
            figures.update(client.get("/api/v1/platforms/1/indicators", headers=headers).json())
            return int(figures.get("points_today", 0)) > 0  # type: ignore[call-overload]

        until("points arrived", live, 120, proc)
        live_s = time.monotonic() - started
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(60)
    total = installed + live_s
    print(f"machine: {os.cpu_count()} cores; work dir {work}")
    print(f"venv + pip install -e '.[edge]' (no cache)   {installed:6.1f} s")
    print(f"qiantang demo start -> console answering     {console_s:6.1f} s")
    print(f"qiantang demo start -> points arriving       {live_s:6.1f} s")
    print(f"install + demo to live data                  {total:6.1f} s  (target < 120 s)")
    print(
        f"devices {figures.get('devices')}, online {figures.get('devices_online')}, "
        f"points today {figures.get('points_today')}; demo exit code {code}"
    )
    print("PASS" if total < 120 and code == 0 else "MISS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
