"""decisions carry their offers and the look-up trail

Revision ID: 0002
Revises (down_revision): '0001'
Create Date: 2026-12-03 09:42:59.141125
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


# The offers shown, with the estimate before learning where learning moved it, as one JSON
# object per decision: {offer id: [rank, score, probability, probability before learning]}.
_OFFERS_SQLITE = (
    "SELECT json_group_object(o.offer_id, json_array(o.rank, o.score, o.probability, "
    "e.probability)) FROM decision_offers o LEFT JOIN model_estimates e "
    "ON e.decision_id = o.decision_id AND e.offer_id = o.offer_id "
    "WHERE o.decision_id = decisions.id"
)
_OFFERS_PG = (
    "SELECT json_object_agg(o.offer_id, json_build_array(o.rank, o.score, o.probability, "
    "e.probability))::text FROM decision_offers o LEFT JOIN model_estimates e "
    "ON e.decision_id = o.decision_id AND e.offer_id = o.offer_id "
    "WHERE o.decision_id = decisions.id"
)


def upgrade() -> None:
    """The offers shown and the look-up trail move into the decision's own row (one insert
    per decision instead of five, docs/performance.md); what the three tables held is kept."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    # Plain ALTER TABLE ADD COLUMN on both (no batch copy of the table: on SQLite dropping the
    # old copy would cascade to decision_offers before its rows have moved).
    op.add_column(
        "decisions",
        sa.Column("offers", sa.Text(), nullable=False, server_default=sa.text("'{}'")),
    )
    op.add_column("decisions", sa.Column("key_id", sa.Integer(), nullable=True))
    op.add_column("decisions", sa.Column("team_id", sa.String(length=40), nullable=True))
    op.create_index("decisions_by_user", "decisions", ["user_id", "created_at"], unique=False)
    offers = _OFFERS_SQLITE if sqlite else _OFFERS_PG
    op.execute(
        f"UPDATE decisions SET offers = COALESCE(({offers}), '{{}}') "
        "WHERE EXISTS (SELECT 1 FROM decision_offers o WHERE o.decision_id = decisions.id)"
    )
    op.create_index("lookups_by_decision", "lookups", ["decision_id"])
    op.execute(
        "UPDATE decisions SET "
        "key_id = (SELECT l.key_id FROM lookups l WHERE l.decision_id = decisions.id), "
        "team_id = (SELECT l.team_id FROM lookups l WHERE l.decision_id = decisions.id)"
    )
    with op.batch_alter_table("lookups", schema=None) as batch_op:
        batch_op.drop_index("lookups_by_decision")
        batch_op.drop_index(batch_op.f("lookups_by_msisdn"))
        batch_op.drop_index(batch_op.f("lookups_by_time"))
        batch_op.drop_index(batch_op.f("lookups_by_user"))
    op.drop_table("lookups")
    op.drop_table("model_estimates")
    op.drop_table("decision_offers")


def downgrade() -> None:
    """The three tables again, filled from the decisions' columns (kept aside first: dropping
    columns copies the table on SQLite, which would cascade to rows already moved back)."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.execute(
        "CREATE TABLE moved_0002 AS SELECT id, created_at, msisdn, channel, known, user_id, "
        "role, store_id, campaign_id, offers, key_id, team_id FROM decisions"
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("decisions_by_user")
        batch_op.drop_column("team_id")
        batch_op.drop_column("key_id")
        batch_op.drop_column("offers")
    op.create_table(
        "decision_offers",
        sa.Column("decision_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("offer_id", sa.VARCHAR(length=64), nullable=False),
        sa.Column("rank", sa.INTEGER(), nullable=False),
        sa.Column("score", sa.FLOAT(), nullable=False),
        sa.Column("probability", sa.FLOAT(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("decision_id", "offer_id"),
    )
    op.create_table(
        "model_estimates",
        sa.Column("decision_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("offer_id", sa.VARCHAR(length=64), nullable=False),
        sa.Column("probability", sa.FLOAT(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("decision_id", "offer_id"),
    )
    op.create_table(
        "lookups",
        sa.Column("id", sa.INTEGER(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("msisdn", sa.VARCHAR(length=16), nullable=False),
        sa.Column("channel", sa.VARCHAR(length=16), nullable=False),
        sa.Column("decision_id", sa.VARCHAR(length=32), nullable=False),
        sa.Column("known", sa.BOOLEAN(), nullable=False),
        sa.Column("key_id", sa.INTEGER(), nullable=False),
        sa.Column("user_id", sa.VARCHAR(length=64), nullable=False),
        sa.Column("role", sa.VARCHAR(length=16), nullable=False),
        sa.Column("store_id", sa.VARCHAR(length=40), nullable=True),
        sa.Column("team_id", sa.VARCHAR(length=40), nullable=True),
        sa.Column("campaign_id", sa.VARCHAR(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lookups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("lookups_by_user"), ["user_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("lookups_by_time"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("lookups_by_msisdn"), ["msisdn", "at"], unique=False)
    if sqlite:
        each = "json_each(d.offers) j"
        value = "json_extract(j.value, '$[{}]')"
    else:
        each = "json_each(d.offers::json) j"
        value = "(j.value->>{})::float"
    op.execute(
        "INSERT INTO decision_offers (decision_id, offer_id, rank, score, probability) "
        f"SELECT d.id, j.key, CAST({value.format(0)} AS INTEGER), {value.format(1)}, "
        f"{value.format(2)} FROM moved_0002 d, {each}"
    )
    op.execute(
        "INSERT INTO model_estimates (decision_id, offer_id, probability) "
        f"SELECT d.id, j.key, {value.format(3)} FROM moved_0002 d, {each} "
        f"WHERE {value.format(3)} IS NOT NULL"
    )
    op.execute(
        "INSERT INTO lookups (at, msisdn, channel, decision_id, known, key_id, user_id, role, "
        "store_id, team_id, campaign_id) SELECT created_at, msisdn, channel, id, known, key_id, "
        "user_id, role, store_id, team_id, campaign_id FROM moved_0002 WHERE key_id IS NOT NULL"
    )
    op.drop_table("moved_0002")
