"""Credentials: where a secret comes from and how to get a fresh one.

Owns: resolving secret sources (``env:NAME``, ``cmd:COMMAND``, ``keyring:SERVICE/USER``, literal;
see mailsync.auth.secrets) and, later, the OAuth2 providers that hand a fresh access token on each
(re)connect. Must not: parse the config file (mailsync.config does), talk IMAP, or write a secret
into any message, log line or exception.
"""
