"""Settings read from DATAAGENT_* variables: the seed README's defaults, list forms and clear errors."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dataagent.entrypoints.settings import ENV_PREFIX, Settings, SettingsError, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No DATAAGENT_* variable set; the test sets the ones it means."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    return monkeypatch


@contextlib.contextmanager
def only_env(**variables: str) -> Iterator[None]:
    """Exactly these DATAAGENT_* variables for the block (for hypothesis, which cannot use monkeypatch)."""
    saved = {k: v for k, v in os.environ.items() if k.upper().startswith(ENV_PREFIX)}
    for name in saved:
        del os.environ[name]
    os.environ.update({ENV_PREFIX + k: v for k, v in variables.items()})
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)


SEED_DEFAULTS: list[tuple[str, Any]] = [
    # basic (seed README, first table)
    ("host", "0.0.0.0"),
    ("port", 8000),
    ("workers", 1),
    ("api_keys", []),
    ("cors_origins", ["*"]),
    ("session_timeout", 3600),
    ("auth_disabled", False),
    ("max_connections", 200),
    # session store (seed README, second table)
    ("session_store", "memory"),
    ("mysql_host", "localhost"),
    ("mysql_port", 3306),
    ("mysql_user", "root"),
    ("mysql_password", ""),
    ("mysql_database", "dataagent"),
    ("mysql_pool_size", 10),
    ("mysql_max_overflow", 20),
    # runs, approvals, limits (PROTOCOL.md)
    ("hitl_timeout", 300),
    ("hitl_policy", "always"),
    ("max_message_chars", 32000),
    ("max_frame_bytes", 1048576),
    ("agent", "auto"),
    ("log_level", "info"),
    ("demo_chunks", 20),
    ("demo_chunk_delay_ms", 25),
]

SEED_IDS = [f"{ENV_PREFIX}{field.upper()}" for field, _ in SEED_DEFAULTS]


def plain(value: Any) -> Any:
    """The value behind a SecretStr, else the value."""
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.mark.parametrize(("field", "default"), SEED_DEFAULTS, ids=SEED_IDS)
def test_every_documented_variable_has_its_default_in_a_clean_environment(
    clean_env: pytest.MonkeyPatch, field: str, default: Any
) -> None:
    settings = load_settings()
    assert plain(getattr(settings, field)) == default


@pytest.mark.parametrize(("field", "default"), SEED_DEFAULTS, ids=SEED_IDS)
def test_every_documented_variable_is_read_from_its_environment_variable(
    clean_env: pytest.MonkeyPatch, field: str, default: Any
) -> None:
    other: dict[type, tuple[str, Any]] = {
        bool: ("true", True), int: ("7", 7), float: ("7", 7),
    }
    if isinstance(default, list):
        raw, expected = "a,b", ["a", "b"]
    elif type(default) in other:
        raw, expected = other[type(default)]
    else:
        raw, expected = {
            "session_store": ("mysql", "mysql"), "hitl_policy": ("writes", "writes"),
            "log_level": ("debug", "debug"), "agent": ("llm", "llm"),
        }.get(field, ("something", "something"))
    if field == "max_frame_bytes":
        raw, expected = "4096", 4096
    clean_env.setenv(ENV_PREFIX + field.upper(), raw)
    assert plain(getattr(load_settings(), field)) == expected


@pytest.mark.parametrize("variable", ["API_KEYS", "CORS_ORIGINS"])
@pytest.mark.parametrize(("raw", "expected"), [
    ("k1,k2", ["k1", "k2"]),
    (" k1 , k2 ,, , ", ["k1", "k2"]),
    ("only", ["only"]),
    ('["k1", "k2"]', ["k1", "k2"]),
    ('  ["k1", "", "  ", " k2 "]  ', ["k1", "k2"]),
    ("[]", []),
    ("", []),
    ("alice:k1,bob:k:2", ["alice:k1", "bob:k:2"]),
], ids=["comma", "comma-blanks", "one", "json", "json-blanks", "json-empty", "empty", "named"])
def test_lists_take_the_comma_form_or_a_json_list_and_drop_blanks(
    clean_env: pytest.MonkeyPatch, variable: str, raw: str, expected: list[str]
) -> None:
    clean_env.setenv(ENV_PREFIX + variable, raw)
    assert getattr(load_settings(), variable.lower()) == expected


KEY = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=",\x00"), min_size=1, max_size=20
).filter(lambda k: not any(c.isspace() for c in k))


@given(st.lists(KEY, max_size=8).filter(lambda keys: not keys or not keys[0].startswith("[")))
@example(["k1"])
@example(["alice:secret", "key_with\"quote", "back\\slash", "ünïcødé🔑"])
def test_the_comma_join_and_the_json_list_of_any_keys_parse_back_to_the_same_list(keys: list[str]) -> None:
    # A comma list whose first key starts with "[" that is also valid JSON is ambiguous: not generated.
    for raw in (",".join(keys), json.dumps(keys), json.dumps(keys, ensure_ascii=False)):
        with only_env(API_KEYS=raw, CORS_ORIGINS=raw):
            settings = load_settings()
        assert settings.api_keys == keys, raw
        assert settings.cors_origins == keys, raw


def test_a_comma_list_that_only_starts_with_a_bracket_is_still_the_comma_form(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_PREFIX + "API_KEYS", "[abc,def")
    assert load_settings().api_keys == ["[abc", "def"]


@pytest.mark.parametrize(("variable", "value", "words"), [
    ("MAX_CONNECTIONS", "lots", ["integer"]),
    ("PORT", "99999", ["65535"]),
    ("SESSION_STORE", "oracle", ["memory", "mysql"]),
    ("WORKERS", "0", ["1"]),
    ("AUTH_DISABLED", "perhaps", ["bool"]),
    ("SESSION_TIMEOUT", "-5", ["0"]),
])
def test_a_bad_value_raises_settings_error_naming_the_variable_in_one_line(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, words: list[str]
) -> None:
    clean_env.setenv(ENV_PREFIX + variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "\n" not in text
    assert ENV_PREFIX + variable in text
    for word in words:
        assert word in text
    assert "Traceback" not in text and "pydantic" not in text.lower()


def test_several_bad_values_give_one_line_each(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_PREFIX + "MAX_CONNECTIONS", "lots")
    clean_env.setenv(ENV_PREFIX + "PORT", "99999")
    clean_env.setenv(ENV_PREFIX + "SESSION_STORE", "oracle")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    for variable in ("MAX_CONNECTIONS", "PORT", "SESSION_STORE"):
        assert sum(ENV_PREFIX + variable in line for line in lines) == 1


def test_a_password_or_key_value_never_appears_in_the_error_text(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_PREFIX + "MYSQL_PASSWORD", "Hunter2-Passw0rd")
    clean_env.setenv(ENV_PREFIX + "MYSQL_URL", "mysql+asyncmy://root:Hunter2-Passw0rd@db/dataagent")
    clean_env.setenv(ENV_PREFIX + "API_KEYS", "alice:TopSecretKey42")
    clean_env.setenv(ENV_PREFIX + "MYSQL_PORT", "not-a-port")
    clean_env.setenv(ENV_PREFIX + "MAX_CONNECTIONS", "lots")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert ENV_PREFIX + "MAX_CONNECTIONS" in text and ENV_PREFIX + "MYSQL_PORT" in text
    assert "Hunter2" not in text and "TopSecretKey42" not in text
    assert "Hunter2" not in repr(caught.value) and "TopSecretKey42" not in repr(caught.value)


def test_the_password_is_kept_secret_in_the_settings_repr(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_PREFIX + "MYSQL_PASSWORD", "Hunter2-Passw0rd")
    settings = load_settings()
    assert settings.mysql_password.get_secret_value() == "Hunter2-Passw0rd"
    assert "Hunter2" not in repr(settings) and "Hunter2" not in str(settings)


def test_overrides_win_over_the_environment_and_choices_ignore_case(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENV_PREFIX + "PORT", "9001")
    clean_env.setenv(ENV_PREFIX + "SESSION_STORE", " MySQL ")
    clean_env.setenv(ENV_PREFIX + "LOG_LEVEL", "WARNING")
    settings = load_settings(port=9002)
    assert settings.port == 9002 and settings.session_store == "mysql" and settings.log_level == "warning"
    assert isinstance(Settings().port, int) and Settings().port == 9001


@pytest.mark.parametrize("raw", ['["a", ', '["alice:k1"', '[ "a" "b"]', '[]x', '["a", "b"]]'])
def test_a_list_that_starts_like_json_and_does_not_parse_is_one_line_without_the_value(
    clean_env: pytest.MonkeyPatch, raw: str
) -> None:
    clean_env.setenv(ENV_PREFIX + "API_KEYS", raw)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "\n" not in text and ENV_PREFIX + "API_KEYS" in text and "JSON" in text, text
    assert raw.strip() not in text  # the keys are secret
