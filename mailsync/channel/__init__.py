"""Channels: one account's folders copied into another's through the store (see plan.py and run.py)."""
