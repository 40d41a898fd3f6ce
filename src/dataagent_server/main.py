"""Keeps the seed's documented `uvicorn dataagent_server.main:app` working."""

from dataagent.entrypoints.app import create_app

app = create_app()
