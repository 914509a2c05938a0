"""Webhook delivery through a corporate proxy: with HTTPS_PROXY set, each request to an https receiver
goes through the proxy as a CONNECT tunnel (seen by a real proxy on 127.0.0.1); with the receiver in
NO_PROXY, it goes straight there; a proxy that refuses leaves the records queued for a retry."""

from __future__ import annotations

import pytest

from crm_support import crm_settings
from mailsync.crm.outbox import Worker
from mailsync.crm.pipeline import Pipeline
from mailsync.store.db import open_store
from mailsync.testing.crm_corpus import generate_crm_corpus, load_into_store
from mailsync.testing.proxy import ConnectProxy
from tls_support import make_certificate, server_context
from webhook_server import Receiver

SECRET = "s3cret-for-tests"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("CRM_HOOK_SECRET", SECRET)
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def store(tmp_path):
    messages, _ = generate_crm_corpus(1)
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    load_into_store(store, "acc", messages[:30])
    yield store
    store.dispose()


def _settings(tmp_path, rx: Receiver, cert):
    sink = {"name": "hook", "type": "webhook", "url": rx.url, "secret": "env:CRM_HOOK_SECRET", "timeout": 2,
            "ca_file": str(cert), "backoff": 0.5, "max_backoff": 1, "max_attempts": 50}
    return crm_settings(tmp_path, {"sink": [sink]})


def _deliver(tmp_path, store, rx: Receiver, cert, deadline: float = 10) -> tuple:
    settings = _settings(tmp_path, rx, cert)
    queued = Pipeline(store, settings).run().queued
    return queued, Worker(store, settings).run(deadline=deadline)


def test_https_proxy_carries_the_webhook_as_a_connect_tunnel(tmp_path, env, store):
    cert, key = make_certificate(tmp_path / "tls")
    with Receiver(SECRET, tls=server_context(cert, key)) as rx, ConnectProxy() as proxy:
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        queued, result = _deliver(tmp_path, store, rx, cert)
        port = rx.server.server_address[1]
        assert queued > 10 and result.delivered == queued and result.pending == 0, result.summary()
        assert proxy.connects and set(proxy.connects) == {("127.0.0.1", port)}  # every request tunnelled
        assert len(proxy.connects) <= 2  # ... on a connection kept alive, not one tunnel per record
        assert len(rx.processed) == queued and rx.bad_signatures == 0  # TLS end to end: signed bodies intact


def test_no_proxy_sends_straight_to_the_receiver(tmp_path, env, store):
    cert, key = make_certificate(tmp_path / "tls")
    with Receiver(SECRET, tls=server_context(cert, key)) as rx, ConnectProxy() as proxy:
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        queued, result = _deliver(tmp_path, store, rx, cert)
        assert result.delivered == queued > 10 and len(rx.processed) == queued
        assert proxy.connects == [] and proxy.accepted == 0


def test_a_refusing_proxy_leaves_the_records_queued(tmp_path, env, store):
    cert, key = make_certificate(tmp_path / "tls")
    with Receiver(SECRET, tls=server_context(cert, key)) as rx, ConnectProxy() as proxy:
        proxy.refuse(True)
        env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        queued, result = _deliver(tmp_path, store, rx, cert, deadline=2)
        assert result.delivered == 0 and result.dead == 0 and result.pending == queued > 10
        assert proxy.connects and not rx.processed
        proxy.refuse(False)
        result = Worker(store, _settings(tmp_path, rx, cert)).run(deadline=10)  # the retries, once due
        assert result.delivered == queued and len(rx.processed) == queued and result.dead == 0
