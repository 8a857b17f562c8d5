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
    # Impressions (the decision served, the offers shown, the look-up trail row, the report
    # counts) are written by a background thread in one transaction every this many
    # milliseconds instead of one per decision; 0 writes each in its request. Outcomes are
    # always written in their request, durably. See docs/performance.md.
    impression_batch_ms: float = 0.0
    # Idempotency keys are remembered this long.
    idempotency_ttl_hours: int = 48
    # Largest accepted request body.
    max_body_bytes: int = 64 * 1024
    # Connections per process (per engine for SQLite's reader and writer).
    db_pool_size: int = 8
    # PostgreSQL pool (per process): connections opened beyond db_pool_size under a burst
    # (closed again when returned), how long a request waits for a free connection before it
    # fails, and the age after which a connection is replaced (0: never; set it below any
    # idle timeout of a firewall or pgbouncer between the node and the database).
    db_max_overflow: int = 8
    db_pool_timeout_seconds: float = 10.0
    db_pool_recycle_seconds: float = 1800.0
    # PostgreSQL: ping each connection before use (one more round trip per read). Without it,
    # after a database restart one request per process fails (503) and the pool is renewed.
    db_pre_ping: bool = False
    # Where the decision path's reads (key check, warehouse, history) wait for the database:
    # "auto" (= "true") on the event loop; "false" in worker threads, which overlap the round
    # trips of a slow link to PostgreSQL at the cost of a thread hand-over per read (measured
    # on one host: p99 21 ms on the loop, 68 ms in threads at half load, docs/performance.md).
    reads_on_loop: str = "auto"
    # Outcomes of concurrent requests committed together, one transaction per batch
    # (nextbest/storage/group_commit.py): "auto" (= "true"), or "false" for a transaction per
    # outcome in a worker thread.
    group_commit: str = "auto"
    # A load keeps the data version it retires readable this long (decisions in flight on
    # other nodes may still read it), then drops its rows.
    version_grace_seconds: float = 300.0
    # Malformed rows a load may skip (listed in its report); one more refuses the whole load.
    load_max_rejects: int = 0
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
    # How often each process re-reads what outcomes taught the ranking (nextbest/learning.py);
    # 0: never in the background (the catalog's [learning] enabled switches learning itself).
    learning_refresh_seconds: float = 60.0
    # Security and operations (docs/security.md, docs/operations.md).
    # Signs the widget pages' session cookies. Unset: a random one per process, with a
    # warning (sessions then end at a restart and do not carry across workers or nodes).
    session_secret: str = ""
    # A widget session lasts this long (never beyond its key's own expiry).
    session_ttl_minutes: int = 600
    # Look-ups (decisions) one key may make per minute; 0 turns the limit off.
    rate_limit_per_minute: int = 120
    # Shared store for the rate limit across processes and nodes (redis://host:6379/0);
    # unset: each process counts on its own.
    redis_url: str = ""
    redis_namespace: str = "nextbest"
    # The look-up trail (who looked up which number) is kept this many days.
    lookup_retention_days: int = 180
    # Log lines as JSON objects (json) or as plain text (text); numbers are masked in both.
    log_format: str = "json"
    # On SIGTERM, requests in flight get this long to finish before the server closes them.
    shutdown_timeout_seconds: float = 30.0
    # Origins (comma-separated, e.g. https://crm.example.com) whose pages may call the API with
    # a bearer key (the counter pop-up's data-key) from another origin. Empty: same origin only.
    cors_origins: str = ""
    # Serve Prometheus metrics at /metrics (no key: restrict it at the network).
    metrics_enabled: bool = True
    # Outbound call queue (nextbest/tasks.py, docs/campaigns.md).
    # An agent holds a leased call task this long; then it returns to the queue.
    task_lease_seconds: float = 600.0
    # A callback is kept this long past its time for the agent who took it, then any agent.
    task_callback_grace_seconds: float = 900.0

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
        for name in (
            "db_max_overflow",
            "db_pool_recycle_seconds",
            "version_grace_seconds",
            "load_max_rejects",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be 0 or more")
        if self.db_pool_timeout_seconds <= 0:
            raise SettingsError(f"{PREFIX}DB_POOL_TIMEOUT_SECONDS: must be positive")
        if self.reads_on_loop not in ("auto", "true", "false"):
            raise SettingsError(f"{PREFIX}READS_ON_LOOP: expected auto, true or false")
        if self.group_commit not in ("auto", "true", "false"):
            raise SettingsError(f"{PREFIX}GROUP_COMMIT: expected auto, true or false")
        if not 0 <= self.impression_batch_ms <= 1000:
            raise SettingsError(f"{PREFIX}IMPRESSION_BATCH_MS: expected 0 (off) to 1000")
        if self.learning_refresh_seconds < 0:
            raise SettingsError(f"{PREFIX}LEARNING_REFRESH_SECONDS: must be 0 (off) or positive")
        self._validate_security()
        if self.task_lease_seconds <= 0 or self.task_callback_grace_seconds < 0:
            raise SettingsError(
                f"{PREFIX}TASK_LEASE_SECONDS must be positive and "
                f"{PREFIX}TASK_CALLBACK_GRACE_SECONDS not negative"
            )

    def decision_reads_on_loop(self) -> bool:
        """``reads_on_loop`` resolved (see the setting): ``auto`` is on the loop."""
        return self.reads_on_loop != "false"

    def group_commit_on(self) -> bool:
        """``group_commit`` resolved (see the setting): ``auto`` is on."""
        return self.group_commit != "false"

    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]

    def _validate_security(self) -> None:
        for origin in self.cors_origin_list():
            scheme, sep, host = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not host or "/" in host:
                raise SettingsError(
                    f"{PREFIX}CORS_ORIGINS: expected origins like https://crm.example.com "
                    f"(scheme and host, no path), got {origin!r}"
                )
        if self.session_secret and len(self.session_secret) < 32:
            raise SettingsError(
                f"{PREFIX}SESSION_SECRET: expected at least 32 characters "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        for name in ("session_ttl_minutes", "lookup_retention_days"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{PREFIX}{name.upper()}: must be positive")
        if self.rate_limit_per_minute < 0:
            raise SettingsError(f"{PREFIX}RATE_LIMIT_PER_MINUTE: must be 0 (off) or positive")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"{PREFIX}REDIS_URL: expected a redis:// or rediss:// URL, got {self.redis_url!r}"
            )
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug", "trace"):
            raise SettingsError(
                f"{PREFIX}LOG_LEVEL: expected critical, error, warning, info, debug or trace, "
                f"got {self.log_level!r}"
            )
        if self.log_format not in ("json", "text"):
            raise SettingsError(
                f"{PREFIX}LOG_FORMAT: expected json or text, got {self.log_format!r}"
            )
        if self.shutdown_timeout_seconds <= 0:
            raise SettingsError(f"{PREFIX}SHUTDOWN_TIMEOUT_SECONDS: must be positive")

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
