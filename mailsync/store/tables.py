"""The store's tables, as SQLAlchemy Core: the one place the layout is declared.

Owns: the MetaData and the Table of each store table, their columns, keys, indexes and Python-side
defaults (mirrored by the Alembic migrations in migrations/versions; a test checks that the two
agree). Must not: import the ORM, query, or hold behaviour; queries live in repositories.py.

Why Core: the sync engine reads and writes these tables through Core statements alone, so a sync
never imports sqlalchemy.orm nor declares mapped classes (about 0.07 s of every sync's start-up,
all of it before the first FETCH). mailsync.store.models maps its typed classes onto these same
Table objects for the code that wants objects (status, changes, the watch daemon, the CRM layer).

Layout:
  accounts    one row per configured account (by name), with the server's throttle (wait until when, why)
  folders     one row per server folder: names, special-use, checkpoints (UIDVALIDITY, UIDNEXT,
              HIGHESTMODSEQ), the resumable download mark `fetched_uid`, and a status
  bodies      raw messages, stored once, content-addressed by SHA-256 (or a header section alone,
              for a message larger than max_size whose body is fetched on demand)
  placements  (folder, uid) -> body, with flags, modseq, internaldate and size
  sync_runs   audit log of sync runs: started, finished, counts, error
  pending_ops local changes waiting for the server (flags, moves, deletes, appends, folder ops)
  audit_events conflicts, fallbacks and UIDVALIDITY decisions
  watch_state the watch daemon's health per account (connected, push mode, last event and sync, lag)
  mirror_folders / mirror_files  an account's live Maildir mirror as last written and agreed
  mirror_snapshots  the fingerprint of a mirror a scan found unchanged (the no-change sync's proof)
  channel_pairs a message of a channel's source account and its copy in the destination account
  channel_folders a folder of a mirror or two-way channel's source and its destination folder
  gmail_messages a Gmail message (X-GM-MSGID) of an account: its body, thread and labels
  watch_workers / account_leases  `mailsync watch --worker` processes sharing a PostgreSQL store, and
              which of them holds each account (a lease with an expiry and a fencing generation)
The CRM layer's tables (crm_*) are declared on this MetaData too, in mailsync.crm.models, which is
imported only where they are needed.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


metadata = MetaData()


def _pk() -> Column:
    return Column("id", Integer, primary_key=True)


def _when(name: str, **kw) -> Column:
    return Column(name, DateTime(timezone=True), **kw)


accounts = Table(
    "accounts", metadata,
    _pk(),
    Column("name", String(200), nullable=False, unique=True),
    Column("host", String(255), nullable=False),
    Column("username", String(320), nullable=False),
    _when("created_at", nullable=False, default=utcnow),
    # The server throttled the account (mailsync.imap.throttle): no sync contacts it before this time;
    # why, and how many throttled runs in a row (the backoff grows with them). NULL / 0: not throttled.
    _when("throttled_until"),
    Column("throttle_reason", Text),
    Column("throttle_count", Integer, nullable=False, default=0, server_default="0"),
)

folders = Table(
    "folders", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(1000), nullable=False),  # decoded from modified UTF-7
    Column("raw_name", String(1000), nullable=False),  # as the server names it on the wire
    Column("delimiter", String(1)),
    Column("special_use", String(40)),  # e.g. "\Sent"
    # The server's own id of the folder (RFC 8474 MAILBOXID), where it offers OBJECTID: it survives
    # renames, so it names a renamed folder for certain.
    Column("mailboxid", String(255)),
    Column("uidvalidity", BigInteger),
    # Checkpoints: moved only in the transaction that stores the data they cover.
    Column("uidnext", BigInteger),  # all UIDs below are mirrored
    Column("highestmodseq", BigInteger),
    Column("messages", BigInteger),  # EXISTS at that same SELECT
    Column("fetched_uid", BigInteger, nullable=False, default=0),  # download mark within a run
    Column("status", String(20), nullable=False, default="ok"),  # ok | aside | gone
    Column("status_reason", Text),
    _when("last_synced_at"),
    Column("left_out_age", Integer),  # messages on the server max_age left out at its last sync (None: no max_age)
    Column("left_out_size", Integer),  # ... and max_size (None: no max_size)
    Column("limits", Text),  # the download limits of its last sync (mailsync.config.limits.limits_key); None: none
    UniqueConstraint("account_id", "raw_name", name="uq_folders_account_raw"),
)

bodies = Table(
    "bodies", metadata,
    # Content-addressed: the key is the SHA-256 of the raw message (lowercase hex), so a body is
    # stored once and a batch of placements can name its bodies without reading ids back.
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("message_id", String(998), index=True),
    # The raw message, or b"" when it is in a pack file (pack is set; see mailsync.store.packs).
    # Read it through repositories.read_body, never from here.
    Column("data", LargeBinary, nullable=False),
    Column("pack", Integer),
    Column("pack_offset", BigInteger),  # where the message bytes start
    # A message larger than its account's max_size, held by its header section alone until its body
    # is fetched (mailsync.store.headers_only): `data` is the header section, `size` the whole
    # message's RFC822.SIZE, and the key is not a SHA-256 of anything (headers_only.headers_key).
    Column("headers_only", Boolean, nullable=False, default=False, server_default="0"),
)

placements = Table(
    "placements", metadata,
    _pk(),
    Column("folder_id", Integer, ForeignKey("folders.id", ondelete="CASCADE"), nullable=False),
    Column("uid", BigInteger),  # None: a local append/move not yet on the server
    Column("body_sha256", String(64), ForeignKey("bodies.sha256"), nullable=False),
    Column("flags", Text, nullable=False, default=""),  # the local view: sorted, space-separated
    # The flags last agreed with the server (the merge base); flags != base_flags is a local change
    # waiting to be pushed. None: no agreed state yet (e.g. after a UIDVALIDITY re-match).
    Column("base_flags", Text),
    # Set when the server expunged it: a tombstone kept for one sync run, so that the same message
    # appearing in another folder becomes a move of this placement rather than a new one.
    Column("tombstone_run", Integer),
    Column("modseq", BigInteger),
    Column("internaldate", String(40), nullable=False),  # ISO 8601 with the server's offset
    Column("size", BigInteger, nullable=False),
    UniqueConstraint("folder_id", "uid", name="uq_placements_folder_uid"),
    Index("ix_placements_body", "body_sha256"),
    Index("ix_placements_tombstone", "tombstone_run"),
)

# A local change waiting to reach the server (the journal of the store-to-server direction), written
# in the same transaction as the local state it changes. States: pending (not sent), sent (the
# command may have reached the server: settle by looking at the server before redoing), done,
# failed (with error; shown by status).
pending_ops = Table(
    "pending_ops", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # flags | move | delete | append | mkdir | rmdir | rename
    Column("folder_id", Integer, ForeignKey("folders.id", ondelete="SET NULL")),
    # indexed: deleting a placement (expiring tombstones) looks here for the entries to null
    Column("placement_id", Integer, ForeignKey("placements.id", ondelete="SET NULL"), index=True),
    Column("args", Text, nullable=False, default="{}"),  # JSON
    Column("state", String(10), nullable=False, default="pending", index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    _when("created_at", nullable=False, default=utcnow),
    _when("updated_at"),
)

# Things a user may need to know happened: conflicts and how they were settled, fallbacks to the
# full comparison, UIDVALIDITY decisions, folders renamed or set aside.
audit_events = Table(
    "audit_events", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("run_id", Integer),
    _when("at", nullable=False, default=utcnow),
    Column("kind", String(30), nullable=False),
    Column("folder", String(1000)),
    Column("uid", BigInteger),
    Column("detail", Text, nullable=False),
)

sync_runs = Table(
    "sync_runs", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    _when("started_at", nullable=False, default=utcnow),
    _when("finished_at"),
    Column("status", String(20), nullable=False, default="running"),  # running | ok | failed
    Column("folders", Integer, nullable=False, default=0),
    Column("new_messages", Integer, nullable=False, default=0),
    Column("flag_changes", Integer, nullable=False, default=0),
    Column("expunged", Integer, nullable=False, default=0),
    Column("bytes_fetched", BigInteger, nullable=False, default=0),
    Column("bodies_downloaded", Integer, nullable=False, default=0, server_default="0"),
    # server-side moves mirrored without download
    Column("moves", Integer, nullable=False, default=0, server_default="0"),
    # local changes settled on the server
    Column("pushed", Integer, nullable=False, default=0, server_default="0"),
    Column("conflicts", Integer, nullable=False, default=0, server_default="0"),
    Column("error", Text),
    Column("notes", Text),  # e.g. "folder X put aside: UIDVALIDITY changed"
)

# What the watch daemon (mailsync.push) last knew of one account; `mailsync status` reads it.
# Written by the daemon only; a stale heartbeat_at means the daemon is no longer running.
watch_state = Table(
    "watch_state", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("connected", Boolean, nullable=False, default=False),  # every push connection is live
    Column("mode", String(10)),  # NOTIFY | IDLE | poll
    Column("connections", Integer, nullable=False, default=0),  # push connections open
    _when("last_event_at"),
    Column("last_event", Text),  # what woke the last sync
    _when("last_sync_at"),  # last successful sync
    Column("lag_seconds", Float),  # event -> synced, of the last sync
    _when("pending_since"),  # oldest event not synced
    Column("last_error", Text),
    _when("last_error_at"),
    Column("failing", Text),  # credentials refused: why (retried slowly)
    Column("daemon_pid", Integer),
    _when("started_at"),
    _when("heartbeat_at"),
)

# An account's live Maildir mirror (mailsync.mirror.live), as mailsync last wrote or agreed it: what
# each scan compares the Maildir with to tell what a mail client changed, and what each write
# compares the store with. A row is committed only after its file or folder is in place.
mirror_folders = Table(
    "mirror_folders", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("folder_id", Integer, nullable=False),  # the store folder (no key: it may be gone, its files not yet)
    Column("path", String(1000), nullable=False),  # its Maildir folder, relative to the mirror's root ("" = root)
    # Deletions a scan found but held (mass-delete guard): how many, and why; None when none are held.
    Column("held", Integer),
    Column("held_reason", Text),
    UniqueConstraint("account_id", "folder_id", name="uq_mirror_folders_account_folder"),
)

mirror_files = Table(
    "mirror_files", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # The placement the file mirrors (no key: when it is expunged, the row still names the file to
    # remove); None for a client's new file whose append is not recorded yet (state "append").
    Column("placement_id", Integer, index=True),
    Column("sha256", String(64), nullable=False),  # of the message: a reused placement id is not ours
    Column("folder", String(1000), nullable=False),  # Maildir folder, relative to the root
    Column("name", String(600), nullable=False),  # "cur/UNIQUE:2,FS" or "new/UNIQUE"
    Column("unique_name", String(500), nullable=False),  # the name's unique part: a file moved keeps it
    Column("flags", Text, nullable=False, default=""),  # last written or agreed: sorted, space-separated
    Column("state", String(10), nullable=False, default="ok"),  # ok | append
    UniqueConstraint("account_id", "unique_name", name="uq_mirror_files_account_unique"),
    # the no-change sync counts each folder's files by it, and looks for claims, without reading rows
    Index("ix_mirror_files_state", "account_id", "state", "folder"),
)

# The fingerprint of an account's Maildir mirror (mailsync.mirror.snapshot) taken by the last scan
# that found no client change, when the write after it found the Maildir in step with the store;
# removed at the start of every scan. While it holds, a sync in which the server changed nothing
# either ends without the scan (mailsync.sync.quick).
mirror_snapshots = Table(
    "mirror_snapshots", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("snapshot", Text, nullable=False),  # JSON: the layout and each path's (device, inode, mtime, ctime)
)

# A channel (mailsync.channel) between two accounts: each message of the source it has given a copy
# in the destination, once. The pair is committed with the copy's placement and its journal entry
# (an APPEND, or none when the destination held the message already), so a rerun, after a crash or
# not, never copies a message twice.
channel_pairs = Table(
    "channel_pairs", metadata,
    _pk(),
    Column("channel", String(200), nullable=False),
    # No keys: the source message may be expunged later (a copy channel keeps its copy, and the
    # pair says it was made); a destination placement may go the same way.
    Column("src_placement_id", Integer, nullable=False),
    Column("dest_placement_id", Integer),
    Column("sha256", String(64), nullable=False),  # of the message: a reused placement id is not ours
    _when("created_at", nullable=False, default=utcnow),
    # two-way channels: the last agreed state of the pair (mailsync.channel.two_way), what each
    # side's change is told by; NULL until a two-way run agrees on one
    Column("agreed_flags", Text),
    Column("dest_sha256", String(64)),  # when the copy was found by Message-ID and size: its own body
    Column("src_folder_id", Integer),
    Column("dest_folder_id", Integer),
    UniqueConstraint("channel", "src_placement_id", name="uq_channel_pairs_channel_src"),
)

channel_folders = Table(
    "channel_folders", metadata,
    _pk(),
    Column("channel", String(200), nullable=False),
    # a source folder and its destination folder in a mirror or two-way channel, with the names
    # they had when last agreed: a rename on one side is told by them (no keys: either may go)
    Column("src_folder_id", Integer, nullable=False),
    Column("dest_folder_id", Integer, nullable=False),
    Column("src_name", Text, nullable=False),
    Column("dest_name", Text, nullable=False),
    UniqueConstraint("channel", "src_folder_id", name="uq_channel_folders_channel_src"),
)

# A Gmail message (X-GM-EXT-1) of an account, by its X-GM-MSGID: Gmail shows one message in the
# folder of each of its labels and in [Gmail]/All Mail, and this row lets a sync place the other
# copies on the body it holds instead of downloading them again. Written in the transaction of the
# body's batch (or of the label change), so it never names a body that was not committed.
gmail_messages = Table(
    "gmail_messages", metadata,
    _pk(),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("msgid", String(20), nullable=False),  # X-GM-MSGID, decimal (unsigned 64-bit)
    Column("thrid", String(20)),  # X-GM-THRID
    # No key: the body may be dropped when its last placement goes; a look-up joins bodies.
    Column("body_sha256", String(64), nullable=False),
    Column("labels", Text, nullable=False, default="[]"),  # X-GM-LABELS as a sorted JSON list of strings
    UniqueConstraint("account_id", "msgid", name="uq_gmail_messages_account_msgid"),
    Index("ix_gmail_messages_body", "account_id", "body_sha256"),
)


# `mailsync watch --worker` (mailsync.push.worker): the worker processes sharing one PostgreSQL store
# and who holds which account. Times come from the database's clock (now()), never a worker's, so
# that machines with skewed clocks agree on what has expired. A worker is alive while its
# heartbeat_at is younger than its lease_ttl; a lease is held while expires_at is in the future.
watch_workers = Table(
    "watch_workers", metadata,
    Column("id", String(200), primary_key=True),  # host:pid:random, new for every start
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("max_accounts", Integer),  # NULL: no limit
    Column("lease_ttl", Float, nullable=False),
    _when("started_at", nullable=False, default=utcnow),
    _when("heartbeat_at", nullable=False, default=utcnow),
)

# One row per account ever offered to the workers. ``generation`` grows by one on every claim: it
# is the fencing token a sync checks in the transaction of each of its writes (lease_repo.Fence),
# so a worker paused past its lease cannot write once another took the account over.
account_leases = Table(
    "account_leases", metadata,
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("worker", String(200)),  # NULL: free (released, or never claimed)
    Column("generation", BigInteger, nullable=False, default=0, server_default="0"),
    _when("acquired_at"),
    _when("expires_at"),
    Index("ix_account_leases_worker", "worker"),
)

# PostgreSQL: every local change queued (a pending_ops row, from any writer on any machine) is
# announced on the channel LOCAL_CHANGES_CHANNEL with its account id, delivered at its commit, so the
# watch worker that holds the account (LISTEN, mailsync.push.notify) wakes its sync at once.
LOCAL_CHANGES_CHANNEL = "mailsync_local_changes"
PG_NOTIFY_DDL = (
    "CREATE OR REPLACE FUNCTION mailsync_notify_local_change() RETURNS trigger AS $$ BEGIN "
    f"PERFORM pg_notify('{LOCAL_CHANGES_CHANNEL}', NEW.account_id::text); RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER pending_ops_notify AFTER INSERT ON pending_ops FOR EACH ROW "
    "EXECUTE FUNCTION mailsync_notify_local_change()",
)
PG_NOTIFY_DROP = ("DROP TRIGGER IF EXISTS pending_ops_notify ON pending_ops",
                  "DROP FUNCTION IF EXISTS mailsync_notify_local_change()")


def _notify_trigger(target, connection, **kw) -> None:
    if connection.dialect.name == "postgresql":
        for statement in PG_NOTIFY_DDL:
            connection.exec_driver_sql(statement)


event.listen(pending_ops, "after_create", _notify_trigger)
