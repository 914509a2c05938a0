"""The local store: typed models, the engine and migrations, repositories and the unit of work.

Owns: everything that touches the SQL database. Must not: speak IMAP or make sync decisions.
"""
