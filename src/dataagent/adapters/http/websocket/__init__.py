"""WebSocket /ws/chat/{session_id}: streaming chat, approvals, cancel and resume (PROTOCOL.md).

endpoint: the route (accept, auth, capacity); connection: one socket's reader and writer; handlers: the client
frames it acts on; frames: encoding and parsing; fastpath: the publisher-step write; watchdog: blocked sends.
"""

from dataagent.adapters.http.websocket.connection import Connection, SocketSettings
from dataagent.adapters.http.websocket.endpoint import router
from dataagent.adapters.http.websocket.frames import encode
from dataagent.adapters.http.websocket.watchdog import SendWatchdog

__all__ = ["Connection", "SendWatchdog", "SocketSettings", "encode", "router"]
