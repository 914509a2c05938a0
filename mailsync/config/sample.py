"""The commented sample config that ``mailsync init`` writes.

Owns: the sample text (which mailsync.config.loader must accept as it is) and writing it safely:
parent directories created, an existing file never overwritten without ``force``, the file created
with mode 0600 through a temporary file and an atomic rename.
Must not: read or validate an existing config (the loader does), or hold any real secret.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from mailsync.config.loader import default_store_url
from mailsync.errors import ConfigError
from mailsync.fsutil import fsync_dir, write_all

__all__ = ["SAMPLE_CONFIG", "sample_config", "write_sample"]

_STORE_URL_PLACEHOLDER = "sqlite:////home/you/.local/share/mailsync/mailsync.db"

_TEMPLATE = """\
# mailsync configuration (TOML).
#
# Secrets are never needed in this file. Wherever a secret goes (password, client_secret), write
# one of these sources instead; mailsync reads it each time it connects:
#   "env:NAME"              the environment variable NAME
#   "cmd:COMMAND"           the first line printed by COMMAND (run with /bin/sh, stdin closed,
#                           30 s timeout), e.g. "cmd:pass show mail/work"
#   "keyring:SERVICE/USER"  the system keyring; store it with: keyring set SERVICE USER
# Anything else is taken literally, and is only accepted while this file is readable by you
# alone (chmod 600).

[store]
# Where mailsync keeps its local copy and sync state: any SQLAlchemy URL. When url is left out,
# this SQLite file (under $XDG_DATA_HOME) is used:
# url = "{store_url}"
# PostgreSQL, for shared or large deployments (leave the password to ~/.pgpass or PGPASSWORD):
# url = "postgresql+psycopg://mailsync@db.example.com/mailsync"

# One [[account]] table per IMAP account. With no accounts, `mailsync sync` does nothing.
[[account]]
name = "work"                          # unique; letters, digits, '.', '_' and '-'
host = "imap.example.com"              # the IMAP server
# port = 993                           # default: 993 with tls = "implicit", 143 otherwise
tls = "implicit"                       # "implicit" (TLS from the start), "starttls", or "none"
                                       # ("none" only for 127.0.0.1/::1/localhost, or with
                                       # allow_plaintext = true: everything would be unencrypted)
# allow_plaintext = false
# ca_file = "certs/work-ca.pem"        # extra CA certificates (PEM); relative to this file
username = "me@example.com"
password = "env:WORK_IMAP_PASSWORD"    # or "cmd:COMMAND", "keyring:SERVICE/USER"
folders = ["*"]                        # folder patterns to sync ("*" is every folder)
exclude = ["Junk", "Spam"]             # patterns to leave out
conflict = "server"                    # a flag changed both ways: "server", "local" or "newest" wins
# max_connections = 4                  # connections to this server at once (Gmail's 15 are for all
                                       # of an account's clients together: keep 4 or 5 there)
# batch_size = 5000                    # messages per committed batch (1 to 10000)
# timeout = 60                         # seconds for connecting and for each read
# command_deadline = 120               # seconds any one command may take (default: twice timeout),
# deadline_rate = 32768                # plus a second per this many bytes of answer received
# max_age = "90d"                      # download only mail newer than this (h, d, w, m, y)
# max_size = "25MB"                    # do not download messages larger than this
# max_download_rate = "500KB/s"        # read message bodies at most this fast (metered links)
# throttle_max_wait = 900              # seconds to wait in place when the server throttles

# CRM records (contacts, companies, activities) derived from the synced mail, delivered to sinks.
# Every sink has the outbox's retries, rate limit and dead letters; `mailsync crm preview --sink
# NAME` shows what it would be sent. Tokens and secrets take the same source forms as a password.
# [crm]
# enabled = true
# create_contacts = "sent"             # "none", "sent" or "sent_and_received"
# [[crm.sink]]                         # a signed JSON POST per record, to a receiver of your own
# name = "hook"
# type = "webhook"                     # HTTPS_PROXY / NO_PROXY apply
# url = "https://crm.example.com/hooks/mailsync"
# secret = "env:CRM_WEBHOOK_SECRET"    # the HMAC-SHA256 key of X-Mailsync-Signature
# [[crm.sink]]                         # HubSpot: contacts by email, companies by domain, logged emails
# name = "hubspot"
# type = "hubspot"
# token = "env:HUBSPOT_TOKEN"          # a private app's access token (crm.objects contacts and
#                                      # companies read/write)
# rate_limit = 4                       # records a second (the default), within HubSpot's limits
# [crm.sink.fields.contact]            # HubSpot property = record field, over the defaults
# jobtitle = "display_name"
# [[crm.sink]]                         # Salesforce: Contacts, Accounts, completed email Tasks
# name = "salesforce"
# type = "salesforce"
# url = "https://mycompany.my.salesforce.com"
# token = "cmd:sf org display --json | jq -r .result.accessToken"   # an OAuth access token
# external_id_field = "Mailsync_Id__c" # optional: an External ID field on Contact, Account and Task
# [[crm.sink]]                         # BottleCRM (self-hosted django-crm): contacts, accounts, emails
# name = "bottlecrm"
# type = "bottlecrm"
# url = "https://crm.example.com"      # the server (its REST API is url/api/)
# token = "env:BOTTLECRM_TOKEN"        # a personal access token (bcrm_pat_...) of an org admin

# A channel: one account's folders copied into another's (through the store, nothing downloaded
# twice), after every `mailsync sync` of both and under `mailsync watch`.
# [[channel]]
# name = "to-new-provider"
# from = "work"
# to = "personal"
# folders = ["*"]
# mode = "copy"                        # "copy" (once), "mirror" (follows flags, moves, deletions)
#                                      # or "two-way" (changes on either side reach the other)

# An OAuth2 account (Gmail, Microsoft 365): no password; mailsync gets a token from the provider.
# [[account]]
# name = "personal"
# host = "imap.gmail.com"
# username = "me@gmail.com"
# auth = "oauth2"                      # "password" (the default) or "oauth2"
# provider = "google"                  # "google", "microsoft" or "generic"
# client_id = "env:GOOGLE_CLIENT_ID"   # same source forms as a password
# client_secret = "env:GOOGLE_CLIENT_SECRET"
# max_connections = 5                  # of Gmail's 15, shared with your phone and other mail apps
"""


def sample_config(store_url: str = _STORE_URL_PLACEHOLDER) -> str:
    """The sample text, showing ``store_url`` as the (commented) default store."""
    return _TEMPLATE.format(store_url=store_url.replace("\\", "\\\\").replace('"', '\\"'))


SAMPLE_CONFIG: str = sample_config()


def write_sample(path: Path, *, force: bool = False) -> Path:
    """Write the sample config to ``path`` (mode 0600, atomically) and return the path.

    Refuses to replace an existing file unless ``force``. The commented store URL shows this
    machine's actual default.
    """
    path = Path(path).expanduser()
    if os.path.lexists(path) and not force:
        raise ConfigError(f"{path}: already exists; not overwriting it",
                          hint="edit the existing file, or pass --force to replace it with the sample")
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory", hint="give the path of the config file to create")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"{parent}: cannot create the config directory: {exc.strerror or exc}",
                          hint="check the permissions of its parent, or choose another --config path") from None

    data = sample_config(default_store_url()).encode("utf-8")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        try:
            os.fchmod(fd, 0o600)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if force:
            os.replace(tmp, path)
        else:
            _rename_no_clobber(tmp, path)
        tmp = None
        with contextlib.suppress(OSError):  # best effort: the file itself is already on disk
            fsync_dir(parent)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; not overwriting it",
                          hint="edit the existing file, or pass --force to replace it with the sample") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the sample config: {exc.strerror or exc}",
                          hint="check the permissions of the directory, or choose another --config path") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def _rename_no_clobber(src: str, dst: Path) -> None:
    """Move src to dst, failing with FileExistsError if dst appeared meanwhile."""
    try:
        os.link(src, dst)  # atomic, and refuses an existing dst
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(exc.errno, exc.strerror, str(dst)) from None
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # This filesystem has no hard links: re-check, then rename.
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "File exists", str(dst)) from None
        os.replace(src, dst)
        return
    os.unlink(src)
