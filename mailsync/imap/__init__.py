"""IMAP: connections, commands and the pure response parser.

Owns: everything that speaks IMAP to a server. ``responses`` and ``utf7`` are pure (bytes in, events
out); the modules that own sockets are thin shells around them.
"""
