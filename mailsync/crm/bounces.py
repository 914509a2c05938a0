"""Bounces of every format: which messages are machine reports, and who a bounce says failed.

Owns: the header test that a message is a machine report whose whole body must be read (any
``multipart/report`` -- delivery status, RFC 5965 feedback, DMARC/TLS reports --, an
``X-Failed-Recipients`` field, a sender that is a mail system (MAILER-DAEMON, postmaster,
Mail.Delivery.System, an empty or missing From), a bounce subject (not a reply) from a role or
machine-like sender (Symantec_AntiVirus_for_SMTP_Gateways@, imss@, admin@ ...), or a DMARC
aggregate report's subject), and the bounce read of such a message, in this order:
  1. our RFC 3464 parser (dsn.py), which keeps Status, Diagnostic-Code and Original-Message-ID;
  2. ``X-Failed-Recipients`` (Exim, Gmail, Google Groups ...): each address a hard bounce;
  3. flufl.bounce's detectors (qmail, Yahoo, Exchange 2003, GroupWise, SMTP32, Postfix's and
     Sendmail's text bounces ...) through its public API, ``all_failures``: permanent = hard,
     temporary = soft -- only for a message the header test calls a bounce, never for mail from a
     person, so a quoted bounce in a conversation marks no one.
Every address kept is syntactically valid (email-validator); the returned message's Message-ID comes
from its attached copy, else from a "Message-ID:" line of the quoted original in the text.
Must not: touch the store, the network or the clock; raise on any input.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Mapping, Sequence

from mailsync.crm.addresses import canonical, check_syntax
from mailsync.crm.dsn import BounceRecipient, DeliveryReport, is_report, report_of, returned_message_id

__all__ = ["is_machine_report", "is_system_address", "looks_like_bounce", "read_bounce"]

# Local parts of the sender of a bounce or a report (lowercased, before any "+").
_SYSTEM_LOCAL = re.compile(
    r"^(mailer[-_.]?daemon|postmaster|mail[-_.]?delivery[-_.]?(system|subsystem|service)?|mdaemon|"
    r"mailadm|ndr|nondelivery|non[-_.]?delivery|bounce[sd]?|smtp[-_.]?(gateway|service)?|"
    r"e\d+_smtp_mail_service|system[-_. ]?administrator|noreply-dmarc-support|dmarc[-_.a-z]*|"
    r"opendmarc|abuse[-_.]?reports?|fbl|feedback[-_.]?loop)$")
_BOUNCE_SUBJECT = re.compile(
    r"(?i)(undeliver|undelivered|non[- ]?delivery|delivery (status|failure|failed|has failed|notification|"
    r"report|problem|warning|error)|failure (notice|delivery)|failed mail|mail delivery (failed|failure|"
    r"problem|system)|returned mail|returned to sender|could not be delivered|not delivered|"
    r"message delayed|delayed mail|delivery delayed|mail system error|permanent delivery failure|"
    r"unzustellbar|nicht zustellbar|non remis|non recapitabile|no se pudo entregar|rejected mail|"
    r"message (not|could not be) delivered|^warning: message .* delayed|nameserver error)")
_DMARC_SUBJECT = re.compile(r"(?i)^\s*report[ _-]?domain:.*submitter:")
_BODY_MSGID = re.compile(rb"(?im)^[ \t>]*message-id:[ \t]*(<[^<>\s]+@[^<>\s]+>)")

log = logging.getLogger("mailsync.crm")


def _first(h: Mapping[str, Sequence[str]], name: str) -> str:
    values = h.get(name)
    return values[0] if values else ""


def is_system_address(address: str) -> bool:
    """MAILER-DAEMON@, postmaster@, Mail.Delivery.System@, a DMARC or feedback-loop reporter ..."""
    local = address.rpartition("@")[0].strip('"').lower().split("+", 1)[0]
    return bool(_SYSTEM_LOCAL.match(local))


def looks_like_bounce(h: Mapping[str, Sequence[str]], sender: str | None, subject: str) -> bool:
    """Headers (lowercased name -> values) of a bounce: a report, X-Failed-Recipients, a mail-system
    sender or none (``sender``: the canonical From, None when empty or missing), or a bounce subject
    (``subject``: decoded) without a reply prefix from a machine-like sender."""
    if is_report(_first(h, "content-type")) or h.get("x-failed-recipients"):
        return True
    if sender is None or is_system_address(sender):
        return True
    return bool(_BOUNCE_SUBJECT.search(subject)) and not re.match(r"(?i)\s*(re|aw|sv|fw|fwd|wg)\s*:", subject) \
        and _machine_like_sender(sender)


# Words in the local part of a gateway, scanner or mail server's own address.
_MACHINE_WORDS = re.compile(r"(daemon|postmaster|smtp|gateway|antivirus|virus|mailer|mail[-_.]?server|"
                            r"mail[-_.]?system|delivery|admin|imss|scanner|mailsweeper|ndr|bounce|notif|no-?reply)")


def _machine_like_sender(a: str) -> bool:
    """A role address, or a local part that names a mail system (Symantec_AntiVirus_for_SMTP_Gateways,
    imss, admin ...), or one without letters."""
    from mailsync.crm.junk import is_role_address

    if is_role_address(a):
        return True
    local = a.partition("@")[0]
    return bool(_MACHINE_WORDS.search(local)) or not any(c.isalpha() for c in local)


def is_machine_report(h: Mapping[str, Sequence[str]], sender: str | None, subject: str) -> bool:
    """A message written by a machine about mail: a bounce, a feedback or DMARC report. Never a contact.
    (Arguments as for looks_like_bounce.)"""
    return looks_like_bounce(h, sender, subject) or bool(_DMARC_SUBJECT.search(subject))


def _valid(addr: str) -> str | None:
    addr = addr.strip().strip("<>").strip()
    if not addr or "@" not in addr or check_syntax(addr) is not None:
        return None
    return canonical(addr)


def _quoted_message_id(raw: bytes, own_id: str | None) -> str | None:
    body = raw[len(_head(raw)):]
    for m in _BODY_MSGID.finditer(body):
        mid = m.group(1).decode("ascii", "replace")
        if mid != own_id:
            return mid
    return None


def _head(raw: bytes) -> bytes:
    from mailsync.crm.headers import header_section

    return header_section(raw)


def _flufl(msg) -> tuple[frozenset[bytes], frozenset[bytes]]:
    # flufl.bounce logs every detector it runs (INFO) and a detector's exception with its traceback
    # (ERROR) before raising it; we report that as one debug line instead, so it never reaches a user
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
    try:
        from flufl.bounce import all_failures

        temporary, permanent = all_failures(msg)
    except Exception as exc:  # a detector tripping on odd mail must not take the message down
        log.debug("flufl.bounce failed on a message: %s", exc)
        return frozenset(), frozenset()
    return frozenset(temporary), frozenset(permanent)


def read_bounce(raw: bytes, h: Mapping[str, Sequence[str]], sender: str | None, subject: str,
                own_id: str | None = None) -> DeliveryReport | None:
    """The bounce ``raw`` reports (the whole message), or None when it names no one. ``h``: its
    headers as headers.read_headers gives them; ``sender``, ``subject``: as for looks_like_bounce;
    ``own_id``: its own Message-ID."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception:  # pragma: no cover - the compat32 parser is lenient; this is the last net
        return None
    report = report_of(msg)
    if report is not None and any(r.bounce for r in report.recipients):
        return report
    original = (report.original_message_id if report else None) or returned_message_id(msg) \
        or _quoted_message_id(raw, own_id)
    failed = [a for v in h.get("x-failed-recipients", ()) for a in re.split(r"[,\s]+", v)]
    found: dict[str, BounceRecipient] = {}
    for a in failed:
        addr = _valid(a)
        if addr and addr not in found:
            found[addr] = BounceRecipient(addr, "failed", "", "hard", "X-Failed-Recipients")
    if not found and looks_like_bounce(h, sender, subject):
        temporary, permanent = _flufl(msg)
        for kind, items in (("hard", permanent), ("soft", temporary)):
            for a in sorted(items):
                addr = _valid(a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a))
                if addr and addr not in found:
                    found[addr] = BounceRecipient(addr, "failed" if kind == "hard" else "delayed", "", kind, "")
    if found:
        return DeliveryReport(original, tuple(found.values()))
    return report
