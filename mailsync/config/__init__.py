"""Config: TOML file to typed settings (see model.py for the types, loader.py for the rules)."""

from mailsync.config.model import AccountConfig, Config, SecretRef, StoreConfig

__all__ = ["AccountConfig", "Config", "SecretRef", "StoreConfig"]
