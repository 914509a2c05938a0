"""Two-way sync: pending local changes, audit events, merge base and tombstones on placements.

Revision ID: 0002_two_way
Revises: 0001_initial
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_two_way'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('folder', sa.String(length=1000), nullable=True),
    sa.Column('uid', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_events_account_id'), ['account_id'], unique=False)

    op.create_table('pending_ops',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('folder_id', sa.Integer(), nullable=True),
    sa.Column('placement_id', sa.Integer(), nullable=True),
    sa.Column('args', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['folder_id'], ['folders.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['placement_id'], ['placements.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('pending_ops', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pending_ops_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pending_ops_state'), ['state'], unique=False)

    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('base_flags', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('tombstone_run', sa.Integer(), nullable=True))
        batch_op.alter_column('uid',
               existing_type=sa.BIGINT(),
               nullable=True)
        batch_op.create_index('ix_placements_tombstone', ['tombstone_run'], unique=False)
    # What is in the store was agreed with the server when it was written: that is the merge base.
    op.execute("UPDATE placements SET base_flags = flags")

    with op.batch_alter_table('folders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('messages', sa.BigInteger(), nullable=True))

    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('bodies_downloaded', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('moves', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('pushed', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('conflicts', sa.Integer(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('folders', schema=None) as batch_op:
        batch_op.drop_column('messages')

    with op.batch_alter_table('sync_runs', schema=None) as batch_op:
        batch_op.drop_column('conflicts')
        batch_op.drop_column('pushed')
        batch_op.drop_column('moves')
        batch_op.drop_column('bodies_downloaded')

    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.drop_index('ix_placements_tombstone')
        batch_op.alter_column('uid',
               existing_type=sa.BIGINT(),
               nullable=False)
        batch_op.drop_column('tombstone_run')
        batch_op.drop_column('base_flags')

    with op.batch_alter_table('pending_ops', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pending_ops_state'))
        batch_op.drop_index(batch_op.f('ix_pending_ops_account_id'))

    op.drop_table('pending_ops')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_events_account_id'))

    op.drop_table('audit_events')
