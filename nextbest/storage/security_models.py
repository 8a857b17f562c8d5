"""Tables of security: the widget pages' sessions, and columns added to the keys.

The look-up trail (who looked up which number) is the decision row itself
(``decisions.key_id``, nextbest/lookups.py): there is no decision without its trail.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from nextbest.storage.models import ApiKey, Base, UtcDateTime

__all__ = ["WebSession", "add_missing_key_columns"]


class WebSession(Base):
    """A widget page's signed-in session. The cookie carries a random id (signed); only its
    hash is stored, with the hash of the CSRF token handed out with it."""

    __tablename__ = "web_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, ForeignKey("api_keys.id"))
    csrf_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (Index("web_sessions_by_expiry", "expires_at"),)


# Columns added to `api_keys` after its first release: nullable, so old keys stay valid.
_ADDED_KEY_COLUMNS = ("team_id",)


def add_missing_key_columns(connection: Connection) -> list[str]:
    """Add to an existing ``api_keys`` table the nullable columns it predates; returns them.

    ``create_all`` never alters an existing table; this runs after it (every start and
    ``nextbest migrate``), so keys made before teams existed keep working.
    """
    have = {c["name"] for c in inspect(connection).get_columns(ApiKey.__tablename__)}
    added = []
    for name in _ADDED_KEY_COLUMNS:
        if name in have:
            continue
        kind = ApiKey.__table__.columns[name].type.compile(dialect=connection.dialect)
        connection.execute(text(f"ALTER TABLE api_keys ADD COLUMN {name} {kind}"))
        added.append(name)
    return added


@event.listens_for(Base.metadata, "after_create")
def _upgrade_keys(target: Any, connection: Connection, **kw: Any) -> None:
    if inspect(connection).has_table(ApiKey.__tablename__):
        add_missing_key_columns(connection)
