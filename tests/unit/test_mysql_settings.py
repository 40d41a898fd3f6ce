"""The MySQL URL and engine options from DATAAGENT_MYSQL_* settings (no database needed)."""

from __future__ import annotations

import pytest
from sqlalchemy import make_url

from dataagent.entrypoints.container import build_mysql_engine, mysql_url
from dataagent.entrypoints.settings import ENV_PREFIX, SettingsError, load_settings
from tests.support import make_settings

PASSWORD = "p@ss:w/rd%?#&=+ 中文 é \"'\\ ;"


def test_the_url_from_separate_settings_keeps_any_password_character() -> None:
    settings = make_settings(mysql_host="db.internal", mysql_port=3307, mysql_user="agent",
                             mysql_password=PASSWORD, mysql_database="da")
    url = mysql_url(settings)
    assert (url.drivername, url.host, url.port, url.username, url.database) == (
        "mysql+asyncmy", "db.internal", 3307, "agent", "da")
    assert url.password == PASSWORD
    assert make_url(url.render_as_string(hide_password=False)).password == PASSWORD
    assert PASSWORD not in repr(url) and PASSWORD not in str(url)


def test_no_password_means_none_not_an_empty_one() -> None:
    assert mysql_url(make_settings()).password is None


def test_a_full_mysql_url_wins_and_any_mysql_driver_becomes_asyncmy() -> None:
    url = mysql_url(make_settings(mysql_url="mysql+pymysql://u:s%40cret@h:3310/x?charset=utf8mb4",
                                  mysql_host="ignored"))
    assert (url.drivername, url.host, url.port, url.password, url.database) == (
        "mysql+asyncmy", "h", 3310, "s@cret", "x")
    assert mysql_url(make_settings(mysql_url="mariadb://u@h/x")).drivername == "mariadb+asyncmy"


@pytest.mark.parametrize("value", ["postgresql://u:TopSecret@h/x", "not a url TopSecret"])
def test_a_bad_mysql_url_is_one_line_without_the_url(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "MYSQL_URL", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).count("\n") == 0 and ENV_PREFIX + "MYSQL_URL" in str(caught.value)
    assert "TopSecret" not in str(caught.value)


@pytest.mark.parametrize("password", ["Top@Secret", "Top@Sec/ret", "To#p@Sec:ret", "Top@Sec:9ret", "To/p@Se#cret"])
def test_a_raw_reserved_character_in_the_url_password_says_to_percent_encode_it(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_PREFIX + "MYSQL_URL", f"mysql://app:{password}@db.example:3306/dataagent")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert text.count("\n") == 0 and text.startswith(f"invalid setting {ENV_PREFIX}MYSQL_URL: ")
    assert "percent-encoded" in text and "%40" in text and "DATAAGENT_MYSQL_HOST, _USER, _PASSWORD" in text
    assert "Sec" not in text and "int()" not in text


def test_a_percent_encoded_password_reaches_the_driver_decoded() -> None:
    url = mysql_url(make_settings(mysql_url="mysql://app:To%23p%40Se%2Fc%3Aret@db.example:3306/dataagent"))
    assert (url.password, url.host, url.port, url.database) == ("To#p@Se/c:ret", "db.example", 3306, "dataagent")


def test_an_empty_mysql_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_PREFIX + "MYSQL_URL", "  ")
    assert load_settings().mysql_url is None


async def test_pool_and_timeouts_come_from_the_settings() -> None:
    settings = make_settings(session_store="mysql", mysql_pool_size=3, mysql_max_overflow=4,
                             mysql_pool_timeout=2.5, mysql_pool_recycle=99)
    engine = build_mysql_engine(settings)
    pool = engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout, pool._recycle) == (3, 4, 2.5, 99)  # type: ignore[attr-defined]
    assert pool._pre_ping is True  # type: ignore[attr-defined]
    await engine.dispose()
