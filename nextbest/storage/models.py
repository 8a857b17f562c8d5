"""Tables. Warehouse data is stored per data version; what happens here is not versioned."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Affinity",
    "ApiKey",
    "AuditFlag",
    "Base",
    "DataVersion",
    "Decision",
    "IdempotencyRecord",
    "Outcome",
    "ProfileRow",
    "ProvisioningJob",
    "Subscription",
    "UtcDateTime",
    "WarehouseContact",
]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them without an offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite has no BIGINT autoincrement; PostgreSQL wants BIGINT for ledgers that grow.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class DataVersion(Base):
    """One loaded warehouse extract. Exactly one is ``active``; decisions read only that one."""

    __tablename__ = "data_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(16))  # loading, active, retired, failed
    source: Mapped[str] = mapped_column(Text)
    catalog_version: Mapped[str] = mapped_column(String(64))
    catalog_hash: Mapped[str] = mapped_column(String(64))
    catalog_toml: Mapped[bytes] = mapped_column(LargeBinary)
    profiles: Mapped[int] = mapped_column(Integer, default=0)
    affinities: Mapped[int] = mapped_column(Integer, default=0)
    contacts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        # At most one active version, enforced by the database.
        Index(
            "one_active_version",
            "status",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        # Never reuse the id of a dropped version: rows are keyed by it (SQLite would otherwise
        # hand a failed load's id to the next one, which would then adopt its leftover rows).
        {"sqlite_autoincrement": True},
    )


class ProfileRow(Base):
    __tablename__ = "profiles"

    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    segment: Mapped[str] = mapped_column(String(40))
    brand: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(60))
    store_id: Mapped[str] = mapped_column(String(40))
    arpu: Mapped[float] = mapped_column(Float)
    # List-valued columns keep the extract's ';'-separated form: compact and cheap to split.
    handset: Mapped[str] = mapped_column(Text)
    subscriptions: Mapped[str] = mapped_column(Text)
    lifecycle: Mapped[str] = mapped_column(Text)
    channel_pref: Mapped[str] = mapped_column(Text)
    flags: Mapped[str] = mapped_column(Text)

    __table_args__ = ({"sqlite_with_rowid": False},)


class Affinity(Base):
    __tablename__ = "affinities"

    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(16), primary_key=True)
    offer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    score: Mapped[float] = mapped_column(Float)

    __table_args__ = ({"sqlite_with_rowid": False},)


class WarehouseContact(Base):
    __tablename__ = "warehouse_contacts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version_id: Mapped[int] = mapped_column(Integer)
    msisdn: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    offer_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("warehouse_contacts_by_msisdn", "version_id", "msisdn"),)


class Decision(Base):
    """What was shown to whom, by whom, from which data: the impression outcomes join to, and
    the look-up trail's row (who looked up which number, with which key)."""

    __tablename__ = "decisions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    msisdn: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    store_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    known: Mapped[bool] = mapped_column(Boolean)
    segment: Mapped[str | None] = mapped_column(String(40), nullable=True)
    data_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    catalog_hash: Mapped[str] = mapped_column(String(64))
    events: Mapped[str] = mapped_column(Text, default="")
    # The warehouse flags at the time (arrears...), for the commission audit.
    customer_flags: Mapped[str] = mapped_column(String(100), default="")
    customer_rule: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Set when the decision was made for a campaign's call task (outbound queue).
    campaign_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # The control-group experiment this decision took part in and its arm (model / control);
    # None when no experiment runs (catalog [experiment]). See nextbest/experiments.py.
    experiment: Mapped[str | None] = mapped_column(String(40), nullable=True)
    arm: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The offers shown, as JSON: {offer id: [rank, score, probability served, probability
    # before learning moved it or null]} (storage/shown.py). In the row rather than a row per
    # offer: one insert per decision (docs/performance.md).
    offers: Mapped[str] = mapped_column(Text, default="{}")
    # The look-up trail: the key (and the team it was bound to) that looked the number up.
    # Cleared when the trail's retention ends (nextbest/lookups.py); the decision stays.
    key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    team_id: Mapped[str | None] = mapped_column(String(40), nullable=True)

    __table_args__ = (
        Index("decisions_by_msisdn", "msisdn", "created_at"),
        Index("decisions_by_time", "created_at"),
        Index("decisions_by_user", "user_id", "created_at"),
    )


class Outcome(Base):
    __tablename__ = "outcomes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(String(32), ForeignKey("decisions.id"))
    offer_id: Mapped[str] = mapped_column(String(64))
    msisdn: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    user_id: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("outcomes_by_msisdn", "msisdn", "created_at"),
        Index("outcomes_by_decision", "decision_id", "offer_id"),
    )


class Subscription(Base):
    """A sale. Never two live ones for the same customer and offer (partial unique index)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    msisdn: Mapped[str] = mapped_column(String(16))
    offer_id: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(40))
    price: Mapped[float] = mapped_column(Float, default=0.0)
    decision_id: Mapped[str] = mapped_column(String(32), ForeignKey("decisions.id"))
    outcome_id: Mapped[int] = mapped_column(BigId, ForeignKey("outcomes.id"))
    user_id: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # pending, active, failed, cancelled
    status_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # From the warehouse's later sales status (sales.csv): cancelled on, billed or not.
    cancelled_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    billed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)

    __table_args__ = (
        Index("subscriptions_by_time", "created_at"),
        Index(
            "one_live_subscription",
            "msisdn",
            "offer_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'active')"),
            postgresql_where=text("status IN ('pending', 'active')"),
        ),
    )


class IdempotencyRecord(Base):
    """The first answer to a request that carried an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(64))
    store_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    # The call-center team an agent (or a supervisor's scope) belongs to. Added after the
    # first release: security_models.py adds it to an existing table.
    team_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ProvisioningJob(Base):
    """The transactional outbox: written with the accepted outcome, delivered by the worker."""

    __tablename__ = "provisioning_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(BigId, ForeignKey("subscriptions.id"), unique=True)
    # Sent to the far side so it can recognise a repeated delivery.
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivering, done, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("provisioning_jobs_due", "status", "next_attempt_at"),)


class AuditFlag(Base):
    """A sale the commission audit questions. Flagged, never silently dropped."""

    __tablename__ = "audit_flags"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(BigId, ForeignKey("subscriptions.id"))
    flag: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("one_flag_per_kind", "subscription_id", "flag", unique=True),)
