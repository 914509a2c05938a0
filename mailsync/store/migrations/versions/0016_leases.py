"""Worker leases for `mailsync watch --worker`: watch_workers and account_leases; on PostgreSQL, the
trigger announcing each queued local change (NOTIFY mailsync_local_changes) (mailsync/store/tables.py).

Revision ID: 0016_leases
Revises: 0015_headers_only_maxsize
"""
from alembic import op
import sqlalchemy as sa

# written out here, not imported: a migration keeps the DDL of its time
PG_NOTIFY_DDL = (
    "CREATE OR REPLACE FUNCTION mailsync_notify_local_change() RETURNS trigger AS $$ BEGIN "
    "PERFORM pg_notify('mailsync_local_changes', NEW.account_id::text); RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER pending_ops_notify AFTER INSERT ON pending_ops FOR EACH ROW "
    "EXECUTE FUNCTION mailsync_notify_local_change()",
)
PG_NOTIFY_DROP = ("DROP TRIGGER IF EXISTS pending_ops_notify ON pending_ops",
                  "DROP FUNCTION IF EXISTS mailsync_notify_local_change()")


revision = "0016_leases"
down_revision = "0015_headers_only_maxsize"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watch_workers",
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=True),
        sa.Column("lease_ttl", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "account_leases",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id"),
    )
    op.create_index("ix_account_leases_worker", "account_leases", ["worker"])
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_NOTIFY_DDL:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in PG_NOTIFY_DROP:
            op.execute(statement)
    op.drop_index("ix_account_leases_worker", table_name="account_leases")
    op.drop_table("account_leases")
    op.drop_table("watch_workers")
