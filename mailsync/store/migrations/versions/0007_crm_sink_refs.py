"""CRM sinks: the id each CRM gave a delivered record (mailsync/crm/models.py, CrmSinkRef).

Revision ID: 0007_crm_sink_refs
Revises: 0006_mailboxid
"""
from alembic import op
import sqlalchemy as sa


revision = "0007_crm_sink_refs"
down_revision = "0006_mailboxid"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crm_sink_refs",
        sa.Column("sink", sa.String(length=100), nullable=False),
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("remote_id", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("sink", "record_id"),
    )


def downgrade() -> None:
    op.drop_table("crm_sink_refs")
