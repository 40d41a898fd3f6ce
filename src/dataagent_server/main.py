"""Keeps the seed's documented `uvicorn dataagent_server.main:app` working, with the logging, settings checks
and start-up lines of `dataagent-server`."""

from dataagent.entrypoints.app import from_environment

app = from_environment()
