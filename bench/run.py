"""Run the benchmark matrix: DataAgent Server against the bare FastAPI baseline, in the same run.

Each run starts a fresh server pinned to CPU 0 (taskset) and runs the load generator pinned to CPU 1, after a
5-user warm-up; within a cell the targets take turns run by run. Prints a markdown table of medians and
our/bare ratios; appends every run to --out.

    python bench/run.py                      # the full matrix of docs/PERFORMANCE.md (about 20 min)
    python bench/run.py --quick              # D=0 C=100 and D=10 C=1000, one rep
    python bench/run.py --cells d0:100,d10:500 --reps 3 --targets ours,bare
    python bench/run.py --cancel --idle      # the cancel scenario and RSS per idle connection
    python bench/run.py --cells d10:100 --targets ours --transport ws,sse --reps 1   # SSE beside WebSocket
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
KEY = "benchkey"
PORT = 8100
BENCH_DB = "dataagent_bench"
BENCH_REDIS = "redis://127.0.0.1:6379/3"
MYSQL_ENV = {"DATAAGENT_SESSION_STORE": "mysql", "DATAAGENT_MYSQL_HOST": "127.0.0.1",
             "DATAAGENT_MYSQL_DATABASE": BENCH_DB}
REDIS_ENV = {**MYSQL_ENV, "DATAAGENT_BROKER": "redis", "DATAAGENT_REDIS_URL": BENCH_REDIS}
# target -> (server kind, extra environment, CPUs of the server)
TARGETS: dict[str, tuple[str, dict[str, str], str]] = {
    "ours": ("ours", {}, "0"),
    "ours-nometrics": ("ours", {"DATAAGENT_METRICS": "false"}, "0"),  # the cost of metrics (on by default)
    "bare": ("bare", {}, "0"),
    "ours-mysql": ("ours", MYSQL_ENV, "0"),
    "ours-1w": ("ours", {**REDIS_ENV, "DATAAGENT_WORKERS": "1"}, "0,1"),
    "ours-2w": ("ours", {**REDIS_ENV, "DATAAGENT_WORKERS": "2"}, "0,1"),
}


def add_baseline(checkout: str) -> None:
    """Targets `base` and `base-1w`: our server run from another checkout's `src` (say, main before a change),
    so a before/after comparison takes turns in one run instead of two runs on a machine whose load drifts."""
    src = str(Path(checkout).resolve() / "src")
    TARGETS["base"] = ("ours", {"PYTHONPATH": src}, "0")
    TARGETS["base-1w"] = ("ours", {"PYTHONPATH": src, **TARGETS["ours-1w"][1]}, "0,1")


def reset_backends(extra_env: dict[str, str]) -> None:
    """A fresh MySQL database and Redis DB for a cell that uses them."""
    if extra_env.get("DATAAGENT_SESSION_STORE") == "mysql":
        subprocess.run(["mariadb", "-h", "127.0.0.1", "-u", "root", "-e",
                        f"DROP DATABASE IF EXISTS {BENCH_DB}; CREATE DATABASE {BENCH_DB} CHARACTER SET utf8mb4"],
                       check=True)
    if extra_env.get("DATAAGENT_BROKER") == "redis":
        subprocess.run(["redis-cli", "-u", BENCH_REDIS, "FLUSHDB"], check=True, capture_output=True)


def server_command(target: str, tokens: int, delay_ms: float, compression: str, extra_env: dict[str, str]) -> tuple[
        list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAAGENT_")}
    if target == "bare":
        cmd = [PYTHON, str(HERE / "bare_server.py"), "--port", str(PORT), "--tokens", str(tokens),
               "--delay-ms", str(delay_ms), "--ws-compression", compression]
        return cmd, env
    env.update({
        "DATAAGENT_API_KEYS": f"bench:{KEY}", "DATAAGENT_AGENT": "demo", "DATAAGENT_DEMO_CHUNKS": str(tokens),
        "DATAAGENT_DEMO_CHUNK_DELAY_MS": str(delay_ms), "DATAAGENT_MAX_CONNECTIONS": "20000",
        "DATAAGENT_LOG_LEVEL": "warning", "DATAAGENT_WS_COMPRESSION": compression,
    })
    env.update(extra_env)
    return [PYTHON, "-m", "dataagent.entrypoints.cli", "--host", "127.0.0.1", "--port", str(PORT)], env


def start_server(target: str, tokens: int, delay_ms: float, compression: str, extra_env: dict[str, str],
                 cpus: str) -> subprocess.Popen[bytes]:
    cmd, env = server_command(target, tokens, delay_ms, compression, extra_env)
    proc = subprocess.Popen(["taskset", "-c", cpus, *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{PORT}/api/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{target} server did not start")


def loadgen(args: list[str], pid: int, label: str, out: Path) -> dict[str, Any]:
    cmd = ["taskset", "-c", "1", PYTHON, str(HERE / "loadgen.py"), "--url", f"http://127.0.0.1:{PORT}",
           "--api-key", KEY, "--server-pid", str(pid), "--label", label, "--out", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run_cell(row_label: str, delay_ms: float, users: int, opts: argparse.Namespace, out: Path,
             scenario: str = "stream", tokens: int = 200) -> dict[str, Any]:
    """One run of a target; a row label `target/sse` streams over server-sent events instead of WebSocket."""
    target, _, transport = row_label.partition("/")
    kind, target_env, cpus = TARGETS[target]
    if transport == "sse" and kind == "bare":
        raise SystemExit("the bare baseline speaks WebSocket only (--transport sse: our targets)")
    extra_env = {**target_env, **dict(e.split("=", 1) for e in opts.env)}
    reset_backends(extra_env)
    proc = start_server(kind, tokens, delay_ms, opts.compression_server, extra_env, opts.server_cpus or cpus)
    try:
        common = ["--tokens", str(tokens), "--delay-ms", str(delay_ms), "--compression", opts.compression]
        loadgen([*common, "-c", "5", "-q", "1"], proc.pid, "warmup", Path(os.devnull))
        label = f"{row_label}|{scenario}|d{delay_ms:g}|c{users}"
        ramp = "1" if delay_ms or scenario == "cancel" else "0"
        if scenario == "stream":
            return loadgen([*common, "-c", str(users), "-q", str(opts.questions), "--ramp-s", ramp,
                            "--transport", transport or "ws"], proc.pid, label, out)
        if scenario == "cancel":
            return loadgen([*common, "-c", str(users), "--scenario", "cancel", "--ramp-s", ramp, "--max-duration",
                            "120"], proc.pid, label, out)
        return loadgen([*common, "-c", str(users), "--scenario", "idle"], proc.pid, label, out)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def median(rows: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for row in rows:
        value: Any = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", default="d0:100,d0:500,d0:1000,d10:100,d10:500,d10:1000")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--targets", default="ours,bare", help=f"comma-separated, of: {', '.join(TARGETS)}")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--questions", type=int, default=3)
    p.add_argument("--compression", default="deflate", help="what the clients offer (browsers offer deflate)")
    p.add_argument("--compression-server", default="none", help="what both servers accept: none or deflate")
    p.add_argument("--server-cpus", default=None, help="override the target's CPUs (ours/bare: 0; -1w/-2w: 0,1)")
    p.add_argument("--env", action="append", default=[], help="extra DATAAGENT_*=value for our server")
    p.add_argument("--cancel", action="store_true", help="run the cancel scenario (C=100, T=1000, D=10)")
    p.add_argument("--idle", action="store_true", help="RSS per idle connection with 1000 sockets")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--baseline", default=None, help="a checkout to run as targets base and base-1w (before/after)")
    p.add_argument("--transport", default="ws", help="ws, sse or ws,sse: each stream row of our targets per "
                                                     "transport (rows `target/sse`)")
    p.add_argument("--out", default=str(HERE / "results" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"))
    opts = p.parse_args()
    if opts.baseline:
        add_baseline(opts.baseline)
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cells = "d0:100,d10:1000" if opts.quick else opts.cells
    reps = 1 if opts.quick else opts.reps
    targets = opts.targets.split(",")
    rows_of = [t if transport == "ws" else f"{t}/sse" for t in targets for transport in opts.transport.split(",")
               if transport == "ws" or TARGETS[t][0] != "bare"]
    table: list[str] = []
    if not opts.no_stream:
        table += ["| D | C | target | answers/s | TTFC ovh p50/p99 ms | latency ovh p50/p99 ms | failures | "
                  "peak RSS MB | server CPU | client CPU |", "|---|---|---|---|---|---|---|---|---|---|"]
        for cell in cells.split(","):
            d, c = cell.split(":")
            delay, users = float(d.removeprefix("d")), int(c)
            medians: dict[str, float | None] = {}
            runs: dict[str, list[dict[str, Any]]] = {row: [] for row in rows_of}
            for _ in range(reps):  # targets take turns, so a slow spell of the machine hits them alike
                for row in rows_of:
                    runs[row].append(run_cell(row, delay, users, opts, out))
            for target, rows in runs.items():
                medians[target] = median(rows, "answers_per_s")
                medians[target + "_ttfc99"] = median(rows, "ttfc_overhead_ms", "p99")
                table.append(
                    f"| {delay:g} | {users} | {target} | {medians[target]} | "
                    f"{median(rows, 'ttfc_overhead_ms', 'p50')} / {median(rows, 'ttfc_overhead_ms', 'p99')} | "
                    f"{median(rows, 'latency_overhead_ms', 'p50')} / {median(rows, 'latency_overhead_ms', 'p99')} | "
                    f"{sum(r['failures'] for r in rows)} | {median(rows, 'server_rss_peak_mb')} | "
                    f"{median(rows, 'server_cpu_util')} | {median(rows, 'client_cpu_util')} |")
                print(table[-1], flush=True)
            base = "bare" if "bare" in medians else rows_of[0]
            for target in rows_of:
                if target != base and medians.get(base):
                    table.append(f"| {delay:g} | {users} | **{target}/{base}** | "
                                 f"**{_ratio(medians[target], medians[base])}** | ttfc p99 ratio "
                                 f"{_ratio(medians[target + '_ttfc99'], medians[base + '_ttfc99'])} | | | | | |")
                    print(table[-1], flush=True)
    if opts.cancel:
        for target in (t for t in targets if TARGETS[t][0] != "bare"):  # the bare server has no cancel API
            row = run_cell(target, 10, 100, opts, out, scenario="cancel", tokens=1000)
            table.append(f"cancel {target}: cancel->done p50/p99 {row['cancel_to_done_ms']['p50']} / "
                         f"{row['cancel_to_done_ms']['p99']} ms, chunks after cancel max "
                         f"{row['chunks_after_cancel_max']}, partial kept {row['partial_kept']}, "
                         f"failures {row['failures']}")
            print(table[-1], flush=True)
    if opts.idle:
        for target in targets:
            row = run_cell(target, 10, 1000, opts, out, scenario="idle")
            table.append(f"idle {target}: {row['rss_per_idle_connection_kb']} KB per idle connection "
                         f"({row['rss_before_mb']} -> {row['rss_after_mb']} MB with 1000 sockets)")
            print(table[-1], flush=True)
    print("\n".join(table))
    print(f"\nraw results: {out}")


def _ratio(ours: float | None, bare: float | None) -> float | None:
    return round(ours / bare, 2) if ours is not None and bare else None


if __name__ == "__main__":
    main()
