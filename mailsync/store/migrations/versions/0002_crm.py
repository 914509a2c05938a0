"""CRM tables: state, incremental marks, sources, message facts, participants, refs, contacts,
companies, activities, forgotten hashes, and the outbox (mailsync/crm/models.py).

Revision ID: 0002_crm
Revises: 0002_two_way (the two-way sync landed first; 0004_watch follows)
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_crm'
down_revision = '0002_two_way'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('crm_state',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('crm_marks',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('placement_mark', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('crm_sources',
    sa.Column('placement_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('folder_id', sa.Integer(), nullable=False),
    sa.Column('message_key', sa.String(length=32), nullable=False),
    sa.Column('body_sha256', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('draft', sa.Boolean(), nullable=False),
    sa.Column('answered', sa.Boolean(), nullable=False),
    sa.Column('internaldate', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('placement_id')
    )
    with op.batch_alter_table('crm_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_sources_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_sources_body_sha256'), ['body_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_sources_message_key'), ['message_key'], unique=False)

    op.create_table('crm_messages',
    sa.Column('key', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=True),
    sa.Column('date', sa.BigInteger(), nullable=True),
    sa.Column('from_address', sa.String(length=320), nullable=True),
    sa.Column('list_mailto', sa.Boolean(), nullable=False),
    sa.Column('thread_id', sa.String(length=32), nullable=True),
    sa.Column('facts', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('crm_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_messages_from_address'), ['from_address'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_messages_message_id'), ['message_id'], unique=False)

    op.create_table('crm_participants',
    sa.Column('message_key', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.PrimaryKeyConstraint('message_key', 'address')
    )
    with op.batch_alter_table('crm_participants', schema=None) as batch_op:
        batch_op.create_index('ix_crm_participants_address', ['address'], unique=False)

    op.create_table('crm_refs',
    sa.Column('message_key', sa.String(length=32), nullable=False),
    sa.Column('ref_id', sa.String(length=998), nullable=False),
    sa.PrimaryKeyConstraint('message_key', 'ref_id')
    )
    with op.batch_alter_table('crm_refs', schema=None) as batch_op:
        batch_op.create_index('ix_crm_refs_ref_id', ['ref_id'], unique=False)

    op.create_table('crm_contacts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('company_domain', sa.String(length=255), nullable=True),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('address')
    )
    with op.batch_alter_table('crm_contacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_contacts_company_domain'), ['company_domain'], unique=False)

    op.create_table('crm_companies',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain')
    )
    op.create_table('crm_activities',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('contact_address', sa.String(length=320), nullable=False),
    sa.Column('message_key', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('timestamp', sa.String(length=20), nullable=False),
    sa.Column('latency', sa.Float(), nullable=True),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('crm_activities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crm_activities_contact_address'), ['contact_address'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_activities_message_key'), ['message_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_crm_activities_timestamp'), ['timestamp'], unique=False)

    op.create_table('crm_forgotten',
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('hash')
    )
    op.create_table('crm_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sink', sa.String(length=100), nullable=False),
    sa.Column('record_type', sa.String(length=20), nullable=False),
    sa.Column('record_id', sa.String(length=32), nullable=False),
    sa.Column('op', sa.String(length=10), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('lease_until', sa.Float(), nullable=True),
    sa.Column('lease_owner', sa.String(length=100), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('crm_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_crm_outbox_record', ['record_id'], unique=False)
        batch_op.create_index('ix_crm_outbox_sink_state', ['sink', 'state', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('crm_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_outbox_sink_state')
        batch_op.drop_index('ix_crm_outbox_record')
    op.drop_table('crm_outbox')
    op.drop_table('crm_forgotten')
    with op.batch_alter_table('crm_activities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_activities_timestamp'))
        batch_op.drop_index(batch_op.f('ix_crm_activities_message_key'))
        batch_op.drop_index(batch_op.f('ix_crm_activities_contact_address'))
    op.drop_table('crm_activities')
    op.drop_table('crm_companies')
    with op.batch_alter_table('crm_contacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_contacts_company_domain'))
    op.drop_table('crm_contacts')
    with op.batch_alter_table('crm_refs', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_refs_ref_id')
    op.drop_table('crm_refs')
    with op.batch_alter_table('crm_participants', schema=None) as batch_op:
        batch_op.drop_index('ix_crm_participants_address')
    op.drop_table('crm_participants')
    with op.batch_alter_table('crm_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_messages_message_id'))
        batch_op.drop_index(batch_op.f('ix_crm_messages_from_address'))
    op.drop_table('crm_messages')
    with op.batch_alter_table('crm_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crm_sources_message_key'))
        batch_op.drop_index(batch_op.f('ix_crm_sources_body_sha256'))
        batch_op.drop_index(batch_op.f('ix_crm_sources_account_id'))
    op.drop_table('crm_sources')
    op.drop_table('crm_marks')
    op.drop_table('crm_state')
