"""The framework's limit: a bare FastAPI WebSocket server that streams the same frames as DataAgent.

It speaks the same wire shapes (a `chat` frame in; `connected`, `text` and `done` events out) with no auth,
no sequence numbers, no replay buffer and no persistence: what is left is FastAPI + uvicorn + JSON.

    python bench/bare_server.py --port 8200 --tokens 200 --delay-ms 10 [--ws-compression deflate]
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

import orjson
import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect


def build_app(tokens: int, delay_s: float) -> FastAPI:
    app = FastAPI()

    def frame(session_id: str, event_type: str, data: dict[str, object]) -> str:
        return orjson.dumps({
            "event_type": event_type, "data": data, "timestamp": datetime.now(UTC).isoformat(),
            "session_id": session_id, "run_id": "run_bare",
        }).decode()

    @app.get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws/chat/{session_id}")
    async def chat(websocket: WebSocket, session_id: str) -> None:
        await websocket.accept()
        await websocket.send_text(frame(session_id, "connected", {"session_id": session_id}))
        try:
            while True:
                message = orjson.loads(await websocket.receive_text())
                if message.get("type") != "chat":
                    continue
                for i in range(tokens):
                    await asyncio.sleep(delay_s)
                    await websocket.send_text(frame(session_id, "text", {"content": f"tok{i} ", "is_final": False}))
                await websocket.send_text(frame(session_id, "done", {"status": "completed", "cancelled": False}))
        except WebSocketDisconnect:
            return

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--ws-compression", choices=["none", "deflate"], default="none")
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.tokens, args.delay_ms / 1000), host=args.host, port=args.port, log_level="warning",
        access_log=False, ws_per_message_deflate=args.ws_compression == "deflate", backlog=4096,
    )


if __name__ == "__main__":
    main()
