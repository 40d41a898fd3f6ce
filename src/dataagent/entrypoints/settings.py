"""Settings: one pydantic-settings class read from DATAAGENT_* environment variables."""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Any, Literal

from limits import parse_many as parse_rates
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError

from dataagent.application.auth import SCOPES

ENV_PREFIX = "DATAAGENT_"
AGENT_KEYWORDS = ("auto", "demo", "llm")
_FACTORY_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_SECRET_FIELDS = ("password", "key", "url")
_JSON_START = re.compile(r"^\[\s*(\"|\]|$)")  # `["...` or `[]`: meant as JSON (`[abc,def` is the comma form)


_RAW_PASSWORD = (
    "cannot be read: a user or password with @, /, #, ? or : must be percent-encoded in the URL (@ as %40, "
    "/ as %2F, # as %23, ? as %3F, : as %3A), or set DATAAGENT_MYSQL_HOST, _USER, _PASSWORD and _DATABASE "
    "instead (any password character works there)"
)


class SettingsError(Exception):
    """A setting has a bad value; the message names each variable, one per line."""


def parse_list(value: Any) -> list[str]:
    """A JSON list or the comma form (`a,b`); blanks are dropped. A value that starts like a JSON list of
    strings (`["` or `[]`) and does not parse is an error, not a comma list with a key `["a"`."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        decoded = _json_list(text) if text.startswith("[") else None
        if decoded is None and _JSON_START.match(text):
            raise ValueError("starts like a JSON list but is not valid JSON: write a JSON list such as "
                             '["key1", "key2"] or the comma form key1,key2')
        if decoded is None:
            return [part.strip() for part in text.split(",") if part.strip()]
        value = decoded
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    raise ValueError("must be a comma-separated list or a JSON list")


def _json_list(text: str) -> list[Any] | None:
    """The JSON list `text` is, or None (then it is the comma form, e.g. a first key starting with `[`)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", case_sensitive=False)

    # Basic (seed README)
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # `principal:scope` pairs (application/auth.py SCOPES), e.g. `ops:admin,backend:end_users`
    key_scopes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    session_timeout: float = Field(3600, gt=0)
    auth_disabled: bool = False
    max_connections: int = Field(200, ge=1)
    ui: bool = True
    # Observability (docs/OPERATIONS.md): GET /metrics, behind the API key unless public
    metrics: bool = True
    metrics_public: bool = False
    # HTTP connections (issue 17 item 8): the request head's time and size, idle keep-alive, open connections
    header_timeout: float = Field(10, gt=0, le=3600)
    max_header_bytes: int = Field(64 * 1024, ge=4096, le=16 * 1024 * 1024)
    keep_alive_timeout: float = Field(5, gt=0, le=3600)
    max_http_connections: int | None = Field(None, ge=1)

    # Session store (seed README)
    session_store: Literal["memory", "mysql"] = "memory"
    mysql_host: str = "localhost"
    mysql_port: int = Field(3306, ge=1, le=65535)
    mysql_user: str = "root"
    mysql_password: SecretStr = SecretStr("")
    mysql_database: str = "dataagent"
    mysql_pool_size: int = Field(10, ge=1)
    mysql_max_overflow: int = Field(20, ge=0)
    mysql_url: SecretStr | None = None
    mysql_pool_timeout: float = Field(10, gt=0)
    mysql_connect_timeout: float = Field(5, gt=0, le=3600)
    mysql_read_timeout: float = Field(60, gt=0)
    mysql_pool_recycle: int = Field(1800, ge=1)

    # Runs, approvals, limits
    hitl_timeout: float = Field(300, gt=0)
    hitl_policy: Literal["always", "writes", "never"] = "always"
    max_message_chars: int = Field(32000, ge=1)
    max_sessions_per_principal: int = Field(1000, ge=1)
    max_session_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_queued_per_session: int = Field(5, ge=0, le=1000)  # questions queued by multitask_strategy=enqueue
    # per key (PROTOCOL.md, Rate limits): new questions in a moving window (`30/minute`), answers running at once
    rate_limit: str | None = None
    max_runs_per_key: int | None = Field(None, ge=1)
    max_frame_bytes: int = Field(1024 * 1024, ge=1024)
    max_json_depth: int = Field(16, ge=1, le=24)  # MariaDB refuses JSON nested 32 deep; stored rows add levels
    max_json_bytes: int = Field(64 * 1024, ge=256)
    agent: str = "auto"
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    log_format: Literal["text", "json"] = "text"  # entrypoints/logs.py
    access_log: bool = True  # a line per HTTP request (uvicorn's access log; WebSocket handshakes either way)
    demo_chunks: int = Field(20, ge=1, le=100_000)
    demo_chunk_delay_ms: float = Field(25, ge=0)
    sql_max_rows: int = Field(200, ge=1, le=100_000)
    sql_timeout: float = Field(30, gt=0)
    sql_max_result_bytes: int = Field(1024 * 1024, ge=1024)
    sql_max_cell_bytes: int = Field(64 * 1024, ge=16)
    sql_read_only: bool = True
    data_url: SecretStr | None = None
    data_policy: str | None = None  # a YAML file of data policies per principal (sql/policy.py)
    # Business context and cost estimates (issue 18): docs/SEMANTIC.md
    semantic_file: str | None = None
    sql_max_estimated_rows: int | None = Field(None, ge=1)
    sql_estimate_timeout: float = Field(2, gt=0, le=60)
    verified_query_examples: int = Field(3, ge=0, le=20)  # docs/VERIFIED.md

    # LLM engine (DATAAGENT_AGENT=llm, or auto with a key)
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None  # falls back to OPENAI_API_KEY
    llm_model: str = "gpt-4o-mini"
    llm_timeout: float = Field(60, gt=0)
    llm_max_steps: int = Field(8, ge=1, le=100)
    llm_retries: int = Field(2, ge=0, le=10)
    llm_history_messages: int = Field(40, ge=0, le=1000)
    llm_history_chars: int = Field(24000, ge=0)
    replay_events: int = Field(1000, ge=10)
    replay_ttl: float = Field(600, gt=0)
    expiry_interval: float = Field(60, gt=0)

    # WebSocket
    ws_send_buffer: int = Field(1000, ge=16)
    ws_compression: Literal["none", "deflate"] = "none"
    ws_ping_interval: float = Field(20, gt=0)
    ws_ping_timeout: float = Field(20, gt=0)
    ws_send_timeout: float = Field(40, gt=0)
    shutdown_timeout: float = Field(5, gt=0)
    # Server-sent events (POST /chat/stream, GET /sessions/{id}/stream): a comment line this often keeps
    # proxies from closing an idle stream; their send buffer is DATAAGENT_WS_SEND_BUFFER
    sse_keepalive: float = Field(15, gt=0, le=3600)

    # Broker
    broker: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field("da:", min_length=1, max_length=64)
    redis_max_connections: int = Field(100, ge=4)
    run_lease: float = Field(6, ge=1)

    # SQL audit trail (GET /api/v1/audit): days a record is kept (swept every DATAAGENT_EXPIRY_INTERVAL), and
    # how many the memory store holds (the oldest go first)
    audit_retention: float = Field(90, gt=0, le=36500)
    audit_max_memory_records: int = Field(10_000, ge=1, le=10_000_000)

    @field_validator("api_keys", "cors_origins", "key_scopes", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> list[str]:
        return parse_list(value)

    @field_validator("key_scopes")
    @classmethod
    def _check_scopes(cls, value: list[str]) -> list[str]:
        for entry in value:
            principal, _, scope = entry.rpartition(":")
            if not principal or scope not in SCOPES:
                raise ValueError(
                    f"{entry!r} is not principal:scope with a scope among {', '.join(sorted(SCOPES))}")
        return value

    @property
    def scopes_by_principal(self) -> dict[str, set[str]]:
        """DATAAGENT_KEY_SCOPES as {principal: scopes}."""
        granted: dict[str, set[str]] = {}
        for entry in self.key_scopes:
            principal, _, scope = entry.rpartition(":")
            granted.setdefault(principal, set()).add(scope)
        return granted

    @field_validator("mysql_url", mode="before")
    @classmethod
    def _check_mysql_url(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        try:
            url = make_url(str(raw).strip())
        except ArgumentError:
            raise ValueError("must be a URL such as mysql://user:password@host:3306/dataagent") from None
        except ValueError:  # `invalid literal for int()`: a raw `@` or `:` in the password made a bad port
            raise ValueError(_RAW_PASSWORD) from None
        if any(c in (url.host or "") for c in "@/#?") or any(c in (url.database or "") for c in "@#"):
            raise ValueError(_RAW_PASSWORD)
        if url.get_backend_name() not in ("mysql", "mariadb"):
            raise ValueError("must be a mysql:// or mariadb:// URL")
        return str(raw).strip()

    @field_validator("log_level", "log_format", "session_store", "hitl_policy", "broker", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("llm_base_url", "llm_api_key", "data_url", "data_policy", "semantic_file",
                     "sql_max_estimated_rows", "rate_limit", "max_runs_per_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("rate_limit")
    @classmethod
    def _check_rate(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            items = parse_rates(value)
        except ValueError:
            raise ValueError("must be a count per period, such as 30/minute, 1000/hour or 3/2second") from None
        if len(items) != 1:
            raise ValueError("must be one count per period (several limits are not supported)")
        if items[0].amount < 1:
            raise ValueError("must allow at least one question per period")
        return value.strip()

    @field_validator("agent", mode="before")
    @classmethod
    def _agent(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.lower() in AGENT_KEYWORDS:
            return text.lower()
        if not _FACTORY_SPEC.match(text):
            raise ValueError("must be auto, demo, llm or package.module:factory")
        return text

    @property
    def http_connection_limit(self) -> int:
        """Open HTTP connections (sockets included) per process; past it requests get 503."""
        return self.max_http_connections or 2 * self.max_connections + 50

    @model_validator(mode="after")
    def _openai_key_fallback(self) -> Settings:
        """DATAAGENT_LLM_API_KEY, else the OPENAI_API_KEY the OpenAI tools already use."""
        if self.llm_api_key is None and os.environ.get("OPENAI_API_KEY", "").strip():
            self.llm_api_key = SecretStr(os.environ["OPENAI_API_KEY"].strip())
        return self


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (overrides win); SettingsError with one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


def _is_secret(field: str) -> bool:
    """Values never shown in an error: passwords, keys, and URLs (they may hold a password)."""
    return any(word in field for word in _SECRET_FIELDS)


def describe_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else "?"
        value = error.get("input")
        shown = "" if isinstance(value, dict) or _is_secret(field) else f" (got {value!r})"
        lines.append(f"invalid setting {ENV_PREFIX}{field.upper()}: {error['msg']}{shown}")
    return "\n".join(lines)
