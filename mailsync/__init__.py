"""mailsync: mirror folders, flags and messages between IMAP accounts and a SQL store."""

__version__ = "0.1.0"
