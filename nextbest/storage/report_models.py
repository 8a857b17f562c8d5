"""Tables of the reports and the learning loop: pre-aggregated counts.

``report_rollups`` is written in the same transaction as the decision or outcome it counts
(nextbest/rollups.py), so a report is a sum over a few thousand rows instead of a scan of the
ledgers; ``nextbest rollup --rebuild`` recomputes it from the ledgers.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Date, Integer, String, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from nextbest.storage.models import Base, Decision

__all__ = ["ReportRollup", "add_missing_decision_columns"]


class ReportRollup(Base):
    """Counts per day and per grain: a pair of dimensions (``agent+offer``), or the learning
    loop's ``channel+offer+segment``. Missing values (no campaign, unknown segment) are ''.

    ``shard`` spreads the hottest rows over several rows on PostgreSQL, so concurrent writers
    do not queue on one row lock; reads sum over shards.
    """

    __tablename__ = "report_rollups"

    grain: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    k1: Mapped[str] = mapped_column(String(64), primary_key=True)
    k2: Mapped[str] = mapped_column(String(64), primary_key=True)
    k3: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment: Mapped[str] = mapped_column(String(40), primary_key=True)
    arm: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Contacts (decisions served) and contacts in which an offer was presented / accepted:
    # only on grains without the offer dimension.
    decisions: Mapped[int] = mapped_column(BigInteger, default=0)
    contacts_presented: Mapped[int] = mapped_column(BigInteger, default=0)
    contacts_accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    # Offers presented / accepted (each offer of each decision counted once).
    presented: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    # Monthly price of the sales, in fen (integers add up exactly, in any order).
    revenue_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Sum over the offers presented of the ranking's acceptance estimate before learning, in
    # millionths: the acceptances the warehouse's model expected.
    expected_micro: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = ({"sqlite_with_rowid": False},)


# Columns added to `decisions` after its first release: nullable, so old rows stay valid.
_ADDED_DECISION_COLUMNS = ("experiment", "arm", "offers", "key_id", "team_id")


def add_missing_decision_columns(connection: Connection) -> list[str]:
    """Add to an existing ``decisions`` table the nullable columns it predates; returns them.

    ``create_all`` creates missing tables but never alters existing ones, and a database made
    before the migrations existed is adopted with create_all (nextbest/migrations): this runs
    after it, so such a database from before control groups keeps working. Databases the
    migrations manage got these columns from a revision and are left alone.
    """
    have = {c["name"] for c in inspect(connection).get_columns(Decision.__tablename__)}
    added = []
    for name in _ADDED_DECISION_COLUMNS:
        if name in have:
            continue
        column = Decision.__table__.columns[name]
        kind = column.type.compile(dialect=connection.dialect)
        if not column.nullable:  # a value for the rows already there
            kind += f" NOT NULL DEFAULT '{column.default.arg}'"
        connection.execute(text(f"ALTER TABLE decisions ADD COLUMN {name} {kind}"))
        added.append(name)
    return added


@event.listens_for(Base.metadata, "after_create")
def _upgrade_decisions(target: Any, connection: Connection, **kw: Any) -> None:
    if inspect(connection).has_table(Decision.__tablename__):
        add_missing_decision_columns(connection)
