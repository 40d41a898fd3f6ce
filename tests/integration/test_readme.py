"""The README's examples work verbatim (only the port is changed to a free one)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import cli_command, free_port, spawn, wait_healthy

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(name: str) -> str:
    match = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)\n```", README.read_text(), re.DOTALL)
    assert match, f"README has no block {name}"
    return match.group(1)


def run_shell(block: str, port: int, tmp: Path) -> str:
    """Run a README block as written (the port aside) with a temporary directory of its own, which it leaves
    empty: no fixed file names that two runs on one machine would share."""
    assert not re.search(r"/tmp/|TMPDIR", block), "a README block names a fixed temporary file"
    script = block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60,
                          env=env)
    assert not list(tmp.iterdir()), "a README block left a temporary file behind"
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the README session needs curl and jq")
def test_the_readme_curl_sessions_work_verbatim(tmp_path: Path) -> None:
    port = free_port()
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)],
                   {"DATAAGENT_API_KEYS": "demo:demo-key-123"}, port)
    try:
        wait_healthy(server)
        out = run_shell(readme_block("curl-session"), port, tmp_path)
        assert '"status": "ok"' in out
        assert "Which city has the most customers?" in out and '"status": "completed"' in out
        assert '"title": "你好! Which city has the most customers?"' in out
        assert '"status": "cancelled"' in out
        assert "204" in out and '"error_code": "session_not_found"' in out
        out = run_shell(readme_block("sse-session"), port, tmp_path)
        assert out.count("1 event: run_started") == 2 and out.count("1 event: done") == 2, out
        assert "event: connected" in out and '"recovered":true' in out and '"run_id":' in out, out
        out = run_shell(readme_block("hitl-session"), port, tmp_path)
        assert '"status": "awaiting_approval"' in out and '"name": "run_sql"' in out
        assert '"status": "completed"' in out and '"columns": [' in out
    finally:
        server.stop()


def test_the_readme_library_example_runs() -> None:
    done = subprocess.run([sys.executable, "-c", readme_block("library")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert " hitl " in done.stdout and " tool_result " in done.stdout and " done " in done.stdout
    assert "('user', 'completed'), ('tool', 'success'), ('assistant', 'completed')" in done.stdout


def test_the_readme_client_example_asks_approves_and_prints_the_table() -> None:
    port = free_port()
    server = spawn(cli_command() + ["--host", "127.0.0.1", "--port", str(port)],
                   {"DATAAGENT_API_KEYS": "demo:demo-key-123"}, port)
    try:
        wait_healthy(server)
        script = readme_block("client").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "SELECT country, COUNT(*) AS n FROM customers GROUP BY country"
        assert lines[1] == "['country', 'n']" and len(lines) > 3 and lines[2].startswith("[")
    finally:
        server.stop()
