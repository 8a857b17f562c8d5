"""One settings object, built from ``NEXTBEST_*`` environment variables and passed around.

Nothing reads the environment at import time: ``Settings.from_env()`` is called by the CLI
(or a test) and the result is handed to ``create_app``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

__all__ = ["Settings", "SettingsError"]

PREFIX = "NEXTBEST_"


class SettingsError(ValueError):
    """A setting has a value the service cannot start with; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # SQLAlchemy URL; the embedded default is a SQLite file under ./var.
    database_url: str = "sqlite:///var/nextbest.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # Precomputed (warehouse) data per subscriber is read-mostly: cache it per data version.
    cache_size: int = 100_000
    cache_ttl_seconds: float = 300.0
    # How often a node re-reads which data version is active (a load swaps versions).
    version_check_seconds: float = 1.0
    # Idempotency keys are remembered this long.
    idempotency_ttl_hours: int = 48
    # Largest accepted request body.
    max_body_bytes: int = 64 * 1024
    # Connections per process (per engine for SQLite's reader and writer).
    db_pool_size: int = 8
    # SQLite durability: FULL fsyncs every commit, so an acknowledged outcome survives power
    # loss as well as a crash; NORMAL survives a process crash only.
    sqlite_synchronous: str = "FULL"
    # Provisioning of accepted sales: ledger (embedded), http, or module:factory.
    provisioning: str = "ledger"
    provisioning_url: str = ""
    provisioning_auth_header: str = ""
    provisioning_timeout_seconds: float = 5.0
    # Outbox delivery: attempts before a sale is marked failed, and the backoff between them.
    provisioning_max_attempts: int = 8
    provisioning_backoff_seconds: float = 2.0
    provisioning_backoff_max_seconds: float = 600.0
    # A delivery not finished within this is assumed lost (worker killed) and is retried.
    provisioning_lease_seconds: float = 60.0
    # Run the outbox worker inside the server process (one thread per process).
    worker_in_process: bool = True
    worker_poll_seconds: float = 0.5
    log_level: str = "info"
    # Serve the OpenAPI docs (/schema) without a key.
    docs_enabled: bool = True
    sql_echo: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            name = PREFIX + field.name.upper()
            if name not in env:
                continue
            raw = env[name]
            values[field.name] = _parse(name, raw, field.type)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.database_url.startswith(("sqlite:", "postgresql")):
            raise SettingsError(
                f"{PREFIX}DATABASE_URL: expected a sqlite:/// or postgresql:// URL, "
                f"got {self.database_url!r}"
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"{PREFIX}PORT: expected 1-65535, got {self.port}")
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise SettingsError(
                f"{PREFIX}SQLITE_SYNCHRONOUS: expected OFF, NORMAL, FULL or EXTRA, "
                f"got {self.sqlite_synchronous!r}"
            )
        for name in ("cache_size", "idempotency_ttl_hours", "max_body_bytes", "db_pool_size"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be positive")
        if self.cache_ttl_seconds <= 0:
            raise SettingsError(f"{PREFIX}CACHE_TTL_SECONDS: must be positive")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[1] if ":///" in self.database_url else ""
        return Path(path) if path and path != ":memory:" else None


def _parse(name: str, raw: str, type_: object) -> object:
    if type_ is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}: expected true/false, got {raw!r}")
    if type_ is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if type_ is float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {raw!r}") from None
        # nan compares false with everything: a nan interval or TTL would pass validate() and
        # then never elapse (or always), silently.
        if not math.isfinite(value):
            raise SettingsError(f"{name}: expected a finite number, got {raw!r}")
        return value
    return raw
