"""Servers started by a real command line in a subprocess, with their output captured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.support.servers import KEY_A


@dataclass
class ServerProcess:
    """A server started by a real command line, with its output captured."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str]
    reader: threading.Thread

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def client(self, key: str | None = KEY_A, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"X-API-Key": key} if key else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def spawn(args: list[str], env: dict[str, str], port: int) -> ServerProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAAGENT_", "OPENAI_"))}
    full_env.update(env)
    full_env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    output: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    return ServerProcess(proc, port, output, reader)


def wait_healthy(server: ServerProcess, timeout: float = 20) -> None:
    """Poll GET /api/v1/health (blocking) until the server answers 200 or 503; RuntimeError if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited {server.proc.returncode}:\n{server.text()}")
        try:
            if httpx.get(server.base_url + "/api/v1/health", timeout=1).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # the poll's interval
    raise RuntimeError(f"server not healthy after {timeout}s:\n{server.text()}")


def cli_command() -> list[str]:
    return [sys.executable, "-m", "dataagent.entrypoints.cli"]


def server_env(**env: str) -> dict[str, str]:
    """Environment for a subprocess server that imports the same `dataagent` package as this test process."""
    import dataagent

    src = os.path.dirname(os.path.dirname(os.path.abspath(dataagent.__file__)))
    paths = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    return {"PYTHONPATH": os.pathsep.join(paths), **env}


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
