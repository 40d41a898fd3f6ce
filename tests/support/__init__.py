"""Test support, by purpose: servers (in this process), processes (subprocess servers), wsclient (WebSocket
clients and raw frames), polling (waiting on a condition), spies (results of a real method, recorded). The old
flat names are re-exported here."""

from tests.support.polling import (
    connections,
    eventually,
    wait_for_active_run,
    wait_for_connections,
    wait_for_health,
)
from tests.support.processes import ServerProcess, cli_command, rss_mb, server_env, spawn, wait_healthy
from tests.support.servers import KEY_A, KEY_B, LiveServer, free_port, live_server, make_settings
from tests.support.wsclient import (
    WsClient,
    parse_ws_frame,
    raw_ws_handshake,
    refusal,
    send_masked_text,
    ws_connect,
    ws_connect_to,
)

__all__ = [
    "KEY_A", "KEY_B", "LiveServer", "ServerProcess", "WsClient", "cli_command", "connections", "eventually",
    "free_port", "live_server", "make_settings", "parse_ws_frame", "raw_ws_handshake", "refusal", "rss_mb",
    "send_masked_text", "server_env", "spawn", "wait_for_active_run", "wait_for_connections", "wait_for_health",
    "wait_healthy", "ws_connect", "ws_connect_to",
]
