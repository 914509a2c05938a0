"""IMAP modified UTF-7 (RFC 3501 section 5.1.3), the encoding of mailbox names on the wire.

Owns: ``encode`` (str -> wire name) and ``decode`` (wire name -> str). Must not: do I/O, or guess --
``decode`` raises ``mailsync.errors.ProtocolError`` (naming the mailbox) on anything that is not valid
modified UTF-7, so a mangled name is never stored as if it were real.

The rules: printable US-ASCII (0x20-0x7e) stands for itself, except "&", which is written "&-". Every
other run of characters is written "&" + base64 of its UTF-16BE form, with "," for "/" and no "="
padding, + "-". Decoding is strict about what the RFC forbids: bytes outside printable ASCII, an
unterminated "&...", base64 that does not decode to whole UTF-16 code units (or leaves non-zero bits),
unpaired surrogates, and printable ASCII hidden inside a base64 run.
"""

from __future__ import annotations

import binascii

from mailsync.errors import ProtocolError

__all__ = ["decode", "encode"]

_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")


def _b64(run: str) -> str:
    data = run.encode("utf-16-be")
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").replace(b"/", b",").decode("ascii")


def encode(name: str) -> str:
    """``"~peter/mail/台北/日本語"`` -> ``"~peter/mail/&U,BTFw-/&ZeVnLIqe-"``; ``"&"`` -> ``"&-"``.

    ValueError for a lone surrogate (a ``str`` that is not text).
    """
    if name.isascii() and "&" not in name and name.isprintable():
        return name  # the common case: nothing to do
    out: list[str] = []
    run_start = -1  # start of the current run of characters to encode, or -1
    for i, ch in enumerate(name):
        if " " <= ch <= "~":
            if run_start >= 0:
                out.append("&" + _b64(name[run_start:i]) + "-")
                run_start = -1
            out.append("&-" if ch == "&" else ch)
        elif run_start < 0:
            run_start = i
    if run_start >= 0:
        out.append("&" + _b64(name[run_start:]) + "-")
    return "".join(out)


def decode(name: str | bytes) -> str:
    """``"~peter/mail/&U,BTFw-/&ZeVnLIqe-"`` -> ``"~peter/mail/台北/日本語"``; ``"&-"`` -> ``"&"``.

    ProtocolError (naming the mailbox) when ``name`` is not valid modified UTF-7.
    """
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)
    if b"&" not in raw:
        _check_printable(raw, 0, name)
        return raw.decode("ascii")
    out: list[str] = []
    i, n = 0, len(raw)
    while i < n:
        amp = raw.find(b"&", i)
        if amp < 0:
            amp = n
        direct = raw[i:amp]
        _check_printable(direct, i, name)
        out.append(direct.decode("ascii"))
        if amp == n:
            break
        end = raw.find(b"-", amp + 1)
        if end < 0:
            raise ProtocolError(f"mailbox name {_q(name)}: '&' at offset {amp} is never closed by '-'")
        b64 = raw[amp + 1 : end]
        out.append("&" if not b64 else _decode_run(b64, name))
        i = end + 1
    return "".join(out)


def _decode_run(b64: bytes, name: str | bytes) -> str:
    if not _B64_CHARS.issuperset(b64):
        bad = next(c for c in b64 if c not in _B64_CHARS)
        raise ProtocolError(f"mailbox name {_q(name)}: {chr(bad)!r} is not a modified-base64 character "
                            f"in '&{b64.decode('latin-1')}-'")
    # 16-bit code units in 6-bit characters: 3, 6 or 8 characters per 1, 2 or 3 units, so a valid
    # length modulo 8 is 0, 3 or 6.
    if len(b64) % 8 not in (0, 3, 6):
        raise ProtocolError(f"mailbox name {_q(name)}: '&{b64.decode()}-' is not a whole number of "
                            f"UTF-16 code units")
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
        text = data.decode("utf-16-be")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"mailbox name {_q(name)}: '&{b64.decode()}-' does not decode: {exc}") from None
    if _b64(text).encode("ascii") != b64:
        # Left-over bits were not zero: two spellings of one name must not both be accepted.
        raise ProtocolError(f"mailbox name {_q(name)}: '&{b64.decode()}-' is not in canonical form")
    if any(" " <= ch <= "~" for ch in text):
        raise ProtocolError(f"mailbox name {_q(name)}: '&{b64.decode()}-' encodes printable ASCII, "
                            f"which must stand for itself")
    return text


def _check_printable(direct: bytes, offset: int, name: str | bytes) -> None:
    for pos, c in enumerate(direct, offset):
        if not 0x20 <= c <= 0x7E:
            raise ProtocolError(f"mailbox name {_q(name)}: byte {c:#04x} at offset {pos} is not printable "
                                f"ASCII (modified UTF-7 names are 7-bit; was it sent as UTF-8?)")


def _q(name: str | bytes) -> str:
    return repr(name[:80]) + ("..." if len(name) > 80 else "")
