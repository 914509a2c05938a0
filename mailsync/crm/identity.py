"""Own identity and message direction.

Owns: who "we" are, and why -- the configured ``identities`` of every account and account usernames
that are addresses; and senders learned from \\Sent folders (the Resent-From of a redirected copy,
else the From), which need evidence: at least ``SENT_EVIDENCE`` (3) messages, or a domain one of the
configured identities is on (an alias of ours). A role or mail-system address (MAILER-DAEMON,
postmaster, noreply ...) is never us, configured or learned: one bounce saved in Sent must not make
every later bounce "mail we sent". Also our work domains (the registrable domains of our addresses
that are not free-mail, plus ``[crm] internal_domains``), folder roles (from SPECIAL-USE, else
well-known folder names), and the direction rules:
  sent      From is ours, or the message sits in a \\Sent folder;
  received  otherwise;
  internal  every participant is ours or on one of our work domains (not logged by default).
Must not: touch the store, the network or the clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mailsync.crm.addresses import canonical
from mailsync.crm.domains import is_free_mail, registrable_domain

__all__ = ["Identity", "folder_role", "is_never_us", "ROLES", "SENT_EVIDENCE"]

SENT_EVIDENCE = 3  # messages in \\Sent from an address that make it ours without configuration

ROLES = ("sent", "drafts", "junk", "trash", "archive", "inbox", "other")
_SPECIAL_USE = {"\\sent": "sent", "\\drafts": "drafts", "\\junk": "junk", "\\trash": "trash",
                "\\archive": "archive", "\\all": "archive"}
_NAMES = {
    "sent": "sent", "sent items": "sent", "sent messages": "sent", "sent mail": "sent", "gesendet": "sent",
    "gesendete objekte": "sent", "gesendete elemente": "sent", "envoyés": "sent", "éléments envoyés": "sent",
    "enviados": "sent", "inviata": "sent", "posta inviata": "sent", "[gmail]/sent mail": "sent",
    "drafts": "drafts", "draft": "drafts", "entwürfe": "drafts", "brouillons": "drafts", "borradores": "drafts",
    "[gmail]/drafts": "drafts", "junk": "junk", "spam": "junk", "junk e-mail": "junk", "[gmail]/spam": "junk",
    "trash": "trash", "deleted items": "trash", "deleted messages": "trash", "papierkorb": "trash",
    "[gmail]/trash": "trash", "inbox": "inbox",
}


def folder_role(special_use: str | None, name: str) -> str:
    """sent | drafts | junk | trash | archive | inbox | other."""
    if special_use:
        for flag in special_use.lower().split():
            if flag in _SPECIAL_USE:
                return _SPECIAL_USE[flag]
    return _NAMES.get(name.strip().lower(), "other")


def is_never_us(address: str) -> bool:
    """A role or mail-system address: MAILER-DAEMON, postmaster, noreply, Mail.Delivery.System ..."""
    from mailsync.crm.bounces import is_system_address
    from mailsync.crm.junk import is_role_address

    return is_role_address(address) or is_system_address(address)


@dataclass(frozen=True)
class Identity:
    own: frozenset[str]  # canonical addresses that are us
    work_domains: frozenset[str]  # registrable domains
    # address -> why it is us ("configured", "sent: N messages", "sent: 1 message on configured domain
    # x"), or why it is not ("role address", "sent: 1 message (needs 3)")
    why: Mapping[str, str] = field(default_factory=dict, compare=False)
    rejected: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def build(cls, configured: Iterable[str], sent_from: Mapping[str, int] | Iterable[str],
              internal_domains: Iterable[str] = ()) -> "Identity":
        """``sent_from``: address -> messages in \\Sent from it (or one address per message)."""
        counts: Counter[str] = Counter()
        if isinstance(sent_from, Mapping):
            items = sent_from.items()
        else:
            items = Counter(sent_from).items()
        for a, n in items:
            c = canonical(a) if a else None
            if c:
                counts[c] += int(n)
        why: dict[str, str] = {}
        rejected: dict[str, str] = {}
        for a in (canonical(x) for x in configured):
            if not a:
                continue
            if is_never_us(a):
                rejected[a] = "configured, but a role or mail-system address is never us"
            else:
                why[a] = "configured"
        configured_domains = {a.rpartition("@")[2] for a in why}
        for a, n in sorted(counts.items()):
            if a in why or a in rejected:
                continue
            msgs = f"{n} message{'s' if n != 1 else ''} in Sent"
            domain = a.rpartition("@")[2]
            if is_never_us(a):
                rejected[a] = f"{msgs}, but a role or mail-system address is never us"
            elif n >= SENT_EVIDENCE:
                why[a] = msgs
            elif domain in configured_domains and not is_free_mail(domain):
                why[a] = f"{msgs}, on the domain of a configured identity"
            else:
                rejected[a] = f"{msgs}: not enough evidence (needs {SENT_EVIDENCE}, or a configured identity)"
        domains = {registrable_domain(a.rpartition("@")[2]) for a in why}
        domains = {d for d in domains if d and not is_free_mail(d)}
        domains |= {registrable_domain(d.strip().lstrip("@").lower()) for d in internal_domains if d.strip()}
        return cls(frozenset(why), frozenset(domains), why, rejected)

    def is_own(self, address: str) -> bool:
        return address in self.own

    def on_work_domain(self, address: str) -> bool:
        if not self.work_domains:
            return False
        return registrable_domain(address.rpartition("@")[2]) in self.work_domains

    def is_internal_address(self, address: str) -> bool:
        return address in self.own or self.on_work_domain(address)
