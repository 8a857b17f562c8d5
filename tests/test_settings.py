"""Settings (nextbest.settings): built from NEXTBEST_* variables, typed, checked, and every
refusal names the variable to fix."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import msgspec
import pytest

from nextbest.api.decisions import routes
from nextbest.api.services import Services
from nextbest.settings import Settings, SettingsError

DEFAULTS = Settings()


def test_defaults_when_nothing_is_set() -> None:
    assert Settings.from_env({}) == DEFAULTS
    assert DEFAULTS.database_url == "sqlite:///var/nextbest.db"
    assert (DEFAULTS.host, DEFAULTS.port) == ("127.0.0.1", 8000)
    assert DEFAULTS.worker_in_process is True
    DEFAULTS.validate()


def test_other_variables_are_ignored() -> None:
    env = {"PORT": "1", "NEXTBEST": "x", "NEXTBEST_NO_SUCH_SETTING": "x", "nextbest_port": "1"}
    assert Settings.from_env(env) == DEFAULTS


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEXTBEST_PORT", "9123")
    monkeypatch.setenv("NEXTBEST_SQL_ECHO", "yes")
    settings = Settings.from_env()
    assert settings.port == 9123
    assert settings.sql_echo is True


def test_parses_each_type() -> None:
    settings = Settings.from_env(
        {
            "NEXTBEST_DATABASE_URL": "postgresql+psycopg://nb@db/nextbest",
            "NEXTBEST_PORT": "9000",
            "NEXTBEST_CACHE_SIZE": "250",
            "NEXTBEST_CACHE_TTL_SECONDS": "1.5",
            "NEXTBEST_VERSION_CHECK_SECONDS": "2",
            "NEXTBEST_WORKER_IN_PROCESS": "false",
            "NEXTBEST_DOCS_ENABLED": "0",
            "NEXTBEST_SQL_ECHO": "on",
            "NEXTBEST_LOG_LEVEL": "debug",
        }
    )
    assert settings.database_url == "postgresql+psycopg://nb@db/nextbest"
    assert settings.port == 9000 and isinstance(settings.port, int)
    assert settings.cache_size == 250
    assert settings.cache_ttl_seconds == 1.5
    assert settings.version_check_seconds == 2.0 and isinstance(
        settings.version_check_seconds, float
    )
    assert settings.worker_in_process is False
    assert settings.docs_enabled is False
    assert settings.sql_echo is True
    assert settings.log_level == "debug"
    # What was not set keeps its default.
    assert settings.host == DEFAULTS.host
    assert settings.provisioning == DEFAULTS.provisioning


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("OFF", False),
    ],
)
def test_booleans(raw: str, value: bool) -> None:
    assert Settings.from_env({"NEXTBEST_DOCS_ENABLED": raw}).docs_enabled is value


def test_every_field_can_be_set_from_the_environment() -> None:
    samples: dict[object, tuple[str, object]] = {
        bool: ("false", False),
        int: ("7", 7),
        float: ("0.25", 0.25),
    }
    for field in msgspec.structs.fields(Settings):
        name = "NEXTBEST_" + field.name.upper()
        if field.type is str:
            raw, expected = getattr(DEFAULTS, field.name), getattr(DEFAULTS, field.name)
        else:
            raw, expected = samples[field.type]
        settings = Settings.from_env({name: str(raw)})
        assert getattr(settings, field.name) == expected, name
        assert type(getattr(settings, field.name)) is type(expected), name


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        (
            "NEXTBEST_DOCS_ENABLED",
            "maybe",
            "NEXTBEST_DOCS_ENABLED: expected true/false, got 'maybe'",
        ),
        ("NEXTBEST_SQL_ECHO", "", "NEXTBEST_SQL_ECHO: expected true/false, got ''"),
        ("NEXTBEST_PORT", "8.5", "NEXTBEST_PORT: expected an integer, got '8.5'"),
        ("NEXTBEST_PORT", "http", "NEXTBEST_PORT: expected an integer, got 'http'"),
        ("NEXTBEST_CACHE_SIZE", "", "NEXTBEST_CACHE_SIZE: expected an integer, got ''"),
        (
            "NEXTBEST_CACHE_TTL_SECONDS",
            "fast",
            "NEXTBEST_CACHE_TTL_SECONDS: expected a number, got 'fast'",
        ),
        (
            "NEXTBEST_VERSION_CHECK_SECONDS",
            "nan",
            "NEXTBEST_VERSION_CHECK_SECONDS: expected a finite number, got 'nan'",
        ),
        (
            "NEXTBEST_CACHE_TTL_SECONDS",
            "inf",
            "NEXTBEST_CACHE_TTL_SECONDS: expected a finite number, got 'inf'",
        ),
    ],
)
def test_unparsable_values_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({name: raw})
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "url",
    [
        "mysql://nb@db/nextbest",
        "postgres://nb@db/nextbest",  # SQLAlchemy 2 wants postgresql://
        "nextbest.db",
        "",
    ],
)
def test_validate_refuses_other_databases(url: str) -> None:
    with pytest.raises(SettingsError, match=r"^NEXTBEST_DATABASE_URL: expected a sqlite"):
        Settings(database_url=url).validate()
    with pytest.raises(SettingsError, match=r"^NEXTBEST_DATABASE_URL: "):
        Settings.from_env({"NEXTBEST_DATABASE_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/nextbest.db",
        "sqlite:///:memory:",
        "postgresql://nb@db/nextbest",
        "postgresql+psycopg://nb@db:5432/nextbest",
    ],
)
def test_validate_accepts_sqlite_and_postgresql(url: str) -> None:
    Settings(database_url=url).validate()


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        ({"port": 0}, "NEXTBEST_PORT"),
        ({"port": 65536}, "NEXTBEST_PORT"),
        ({"sqlite_synchronous": "fast"}, "NEXTBEST_SQLITE_SYNCHRONOUS"),
        ({"cache_size": 0}, "NEXTBEST_CACHE_SIZE"),
        ({"idempotency_ttl_hours": -1}, "NEXTBEST_IDEMPOTENCY_TTL_HOURS"),
        ({"max_body_bytes": 0}, "NEXTBEST_MAX_BODY_BYTES"),
        ({"db_pool_size": 0}, "NEXTBEST_DB_POOL_SIZE"),
        ({"cache_ttl_seconds": 0.0}, "NEXTBEST_CACHE_TTL_SECONDS"),
    ],
)
def test_validate_refuses_out_of_range_values(changes: dict[str, object], variable: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        msgspec.structs.replace(DEFAULTS, **changes).validate()
    env = {f"NEXTBEST_{k.upper()}": str(v) for k, v in changes.items()}
    with pytest.raises(SettingsError, match=rf"^{variable}: "):
        Settings.from_env(env)


def test_validate_accepts_the_edges() -> None:
    for changes in ({"port": 1}, {"port": 65535}, {"sqlite_synchronous": "normal"}):
        msgspec.structs.replace(DEFAULTS, **changes).validate()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///var/nextbest.db", Path("var/nextbest.db")),
        ("sqlite:////srv/nb/nextbest.db", Path("/srv/nb/nextbest.db")),
        ("sqlite:///:memory:", None),
        ("sqlite://", None),
        ("postgresql://nb@db/nextbest", None),
    ],
)
def test_sqlite_path(url: str, path: Path | None) -> None:
    settings = Settings(database_url=url)
    assert settings.sqlite_path() == path
    assert settings.is_sqlite is url.startswith("sqlite")


@pytest.mark.parametrize(
    ("url", "raw", "on_loop"),
    [
        ("sqlite:///x.db", "auto", True),
        ("postgresql://127.0.0.1/nb", "auto", True),
        ("postgresql://127.0.0.1/nb", "false", False),
        ("postgresql://127.0.0.1/nb", "true", True),
        ("sqlite:///x.db", "false", False),
    ],
)
def test_reads_on_loop_picks_the_decision_handler(url: str, raw: str, on_loop: bool) -> None:
    settings = Settings.from_env({"NEXTBEST_DATABASE_URL": url, "NEXTBEST_READS_ON_LOOP": raw})
    assert settings.decision_reads_on_loop() is on_loop
    # The handlers only close over the services: building them needs none.
    services = cast(Services, None)
    (decide,) = [
        r
        for r in routes(services, on_loop=on_loop, group_commit=False)
        if "/v1/decisions" in r.paths
    ]
    assert decide.sync_to_thread is not on_loop


def test_reads_on_loop_takes_three_words() -> None:
    with pytest.raises(SettingsError, match=r"^NEXTBEST_READS_ON_LOOP: expected auto, true"):
        Settings.from_env({"NEXTBEST_READS_ON_LOOP": "sometimes"})


@pytest.mark.parametrize(("raw", "on"), [("auto", True), ("true", True), ("false", False)], ids=str)
def test_group_commit_picks_the_outcome_handler(raw: str, on: bool) -> None:
    settings = Settings.from_env(
        {"NEXTBEST_DATABASE_URL": "postgresql://127.0.0.1/nb", "NEXTBEST_GROUP_COMMIT": raw}
    )
    assert settings.group_commit_on() is on
    services = cast(Services, None)
    (record,) = [
        r
        for r in routes(services, on_loop=True, group_commit=on)
        if any(p.endswith("/outcomes") for p in r.paths)
    ]
    # With group commit the handler waits for the batch on the loop; without, in a thread.
    assert bool(record.sync_to_thread) is not on


def test_group_commit_takes_three_words() -> None:
    with pytest.raises(SettingsError, match=r"^NEXTBEST_GROUP_COMMIT: expected auto, true"):
        Settings.from_env({"NEXTBEST_GROUP_COMMIT": "sometimes"})
