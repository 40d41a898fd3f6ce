"""Test doubles that speak real wire protocols over 127.0.0.1."""

from tests.fakes.openai_server import FakeOpenAI, RecordedRequest

__all__ = ["FakeOpenAI", "RecordedRequest"]
