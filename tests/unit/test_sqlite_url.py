"""Plain SQLite URLs are read and written without SQLAlchemy (mailsync.config.sqlite_url), with the
answers SQLAlchemy gives for them; every other URL is left to SQLAlchemy."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL, make_url

from mailsync.config import loader
from mailsync.config.loader import config_from_mapping
from mailsync.config.sqlite_url import plain_sqlite_path, plain_sqlite_url, resolved_plain_sqlite

PLAIN = ["sqlite:////home/me/.local/share/mailsync/mailsync.db", "sqlite:///rel/store.db", "sqlite:///~/m.db",
         "sqlite:////a/b-c_d+e~f/x.db", "sqlite:///x"]
OTHER = ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite:////a b/x.db", "sqlite:////a%20b/x.db",
         "sqlite:////a/x.db?mode=ro", "sqlite:////a/x#y.db", "sqlite:///file:x.db", "sqlite+pysqlite:////a/x.db",
         "postgresql+psycopg://u@h/db", "sqlite:////a/x@y.db", "SQLITE:////a/x.db"]


@pytest.mark.parametrize("url", PLAIN)
def test_a_plain_url_reads_as_sqlalchemy_reads_it(url):
    parsed = make_url(url)
    assert parsed.get_backend_name() == "sqlite" and parsed.password is None
    assert plain_sqlite_path(url) == parsed.database
    assert plain_sqlite_url(parsed.database) == URL.create("sqlite", database=parsed.database).render_as_string(
        hide_password=False) == url


@pytest.mark.parametrize("url", OTHER)
def test_any_other_url_is_left_to_sqlalchemy(url):
    assert plain_sqlite_path(url) is None


@pytest.mark.parametrize("path", ["/a b/x.db", "/a/x?.db", "/a/x#.db", "/a/%41.db", "/a/ü.db", ""])
def test_a_path_that_needs_quoting_is_left_to_sqlalchemy(path):
    assert plain_sqlite_url(path) is None


@pytest.mark.parametrize("folder", ["conf", "conf dir"])
@pytest.mark.parametrize("url", PLAIN + OTHER[2:7])
def test_the_config_gets_the_same_url_either_way(url, folder, tmp_path, monkeypatch):
    """The plain route and the loader's SQLAlchemy route give the same store URL, relative paths
    resolved against the config's folder alike (one whose name needs quoting takes SQLAlchemy's)."""
    base = tmp_path / folder
    base.mkdir()

    def load() -> str:
        return config_from_mapping({"store": {"url": url}}, path=base / "config.toml").store.url

    got = load()
    monkeypatch.setattr(loader, "resolved_plain_sqlite", lambda *_: None)
    assert got == load()
    if url in PLAIN and folder == "conf":
        assert resolved_plain_sqlite(url, base) == got


def test_the_default_store_url_is_the_same_either_way(tmp_path, monkeypatch):
    for data in (tmp_path / "plain", tmp_path / "not plain"):
        monkeypatch.setenv("XDG_DATA_HOME", str(data))
        got = loader.default_store_url()
        monkeypatch.setattr(loader, "plain_sqlite_url", lambda _path: None)
        assert got == loader.default_store_url() == URL.create(
            "sqlite", database=str(data / "mailsync" / "mailsync.db")).render_as_string(hide_password=False)
        monkeypatch.undo()
