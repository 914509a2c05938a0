"""Test support: throwaway Dovecot and PostgreSQL servers (stdlib only; never imported by the engine)."""
