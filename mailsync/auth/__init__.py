"""Credentials: where a secret comes from and how to get a fresh one.

Owns: resolving secret sources (``env:NAME``, ``cmd:COMMAND``, ``keyring:SERVICE/USER``, literal;
see mailsync.auth.secrets), the OAuth2 providers and token manager that hand a fresh access token
on each (re)connect (mailsync.auth.oauth2), and where tokens are kept (mailsync.auth.tokens). Must not: parse the config file (mailsync.config does), talk IMAP, or write a secret
into any message, log line or exception.
"""
