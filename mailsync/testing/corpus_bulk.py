"""The bulk corpus for benchmarks: generate_bulk (long-tailed sizes, fast to stream).

Owns: generate_bulk and its pools. Must not: write files or talk to servers.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from random import Random

from mailsync.testing.corpus_base import (
    _T2024,
    _T2026,
    OWN_ADDRESS,
    OWN_NAME,
    CorpusMessage,
    _b64,
    _enc_text,
    _fmt_addr,
    _fmt_date,
)
from mailsync.testing.corpus_people import _CITIES, _LANG, _PRODUCTS, _PROJECTS, _WEEKDAYS, _people

# --------------------------------------------------------------------------------------------
# Bulk stream for benchmarks
# --------------------------------------------------------------------------------------------

_BULK_WORDS = (
    "the", "and", "for", "with", "order", "invoice", "delivery", "meeting", "project", "update", "please",
    "thanks", "schedule", "pricing", "contract", "team", "review", "warehouse", "shipment", "customer",
    "quarter", "budget", "proposal", "report", "next", "week", "call", "we", "will", "can", "you", "our",
    "regarding", "attached", "confirm", "details", "Größe", "Grüße", "Lieferung", "déjà", "réunion",
    "naïve", "café", "日本", "会议", "Здравствуйте", "ok", "yes", "status", "numbers", "Q3", "2025",
)
_BULK_BLOCK = 50  # messages per planning block
_BULK_LARGE_PER_BLOCK = 1  # 100 KB - 2 MB attachment
_BULK_MEDIUM_PER_BLOCK = 5  # 10 KB - 100 KB attachment
_BULK_STRATA = 40  # large sizes are stratified over this many consecutive large messages


@functools.lru_cache(maxsize=2)
def _bulk_pools(seed: int) -> tuple[bytes, bytes, tuple[tuple[str, str], ...], tuple[str, ...]]:
    rng = Random(f"mailsync-bulk-pools:{seed}")
    lines = []
    for _ in range(3000):
        words = []
        length = 0
        target = rng.randint(30, 74)
        while length < target:
            w = rng.choice(_BULK_WORDS)
            words.append(w)
            length += len(w) + 1
        line = " ".join(words)
        lines.append((line[0].upper() + line[1:] + ".").encode("utf-8") + b"\r\n")
    for _ in range(300):
        lines.append(b"\r\n")
    text_pool = b"".join(rng.choices(lines, k=24000))  # ~1.1 MB
    b64_pool = _b64(rng.randbytes(3_150_000))  # ~4.3 MB of 76-char lines
    people = _people()
    senders = []
    firsts = ("Olivia", "Noah", "Emma", "Liam", "Mia", "Lucas", "Sofia", "Elias", "Hannah", "Mateo", "Jürgen",
              "Zoë", "Kenji", "Mei", "Omar", "Nora")
    lasts = ("Fischer", "Garcia", "Rossi", "Nielsen", "Dubois", "Kowalski", "Silva", "Tanaka", "Novak",
             "Groß")
    domains = ("northwind.example", "contoso.example", "fabrikam.example", "gmail.com", "outlook.com",
               "gmx.de",
               "initech.example", "umbrella.example")
    translit = str.maketrans({"ü": "ue", "ë": "e", "ß": "ss"})
    for i in range(200):
        f, la, dom = firsts[i % len(firsts)], lasts[(i * 7) % len(lasts)], domains[(i * 3) % len(domains)]
        addr = f"{f}.{la}{i}@{dom}".lower().translate(translit)
        senders.append((_fmt_addr(f"{f} {la}", addr), addr))
    for p in people:
        senders.append((p.fmt(), p.addr))
    subjects = []
    for i in range(300):
        lang = ("en", "en", "en", "de", "fr", "es", "ja", "zh")[i % 8]
        tpl = _LANG[lang]["subjects"][i % len(_LANG[lang]["subjects"])]
        ctx = {"first": "Alex", "last": "Morgan", "full": "Alex Morgan", "myfirst": "Alex", "n": i, "n2": i,
               "product": _PRODUCTS[i % len(_PRODUCTS)], "day": _WEEKDAYS[lang][i % 5], "time": "10:00",
               "inv": f"INV-2025-{1000 + i}", "date": "2025-03-01", "colleague": "Dana Kim",
               "city": _CITIES[lang][i % len(_CITIES[lang])], "pct": 5, "year": 2024 + i % 2,
               "week": 1 + i % 52,
               "q": 1 + i % 4, "project": _PROJECTS[i % len(_PROJECTS)]}
        subjects.append(_enc_text(tpl.format_map(ctx), "utf-8", "Q" if i % 2 else "B"))
    return text_pool, b64_pool, tuple(senders), tuple(subjects)


def generate_bulk(n: int = 20000, *, folders: int = 10, seed: int = 1,
                  own_address: str = OWN_ADDRESS) -> Iterator[CorpusMessage]:
    """Stream ``n`` messages over ``folders`` folders ("Bulk00", "Bulk01", ...) for benchmarks.

    Sizes are long-tailed around a 21.7 KB mean (20,000 messages ~ 435 MB): ~88% plain text of
    2-10 KB, 10% with a 10-100 KB attachment, 2% with a 100 KB - 2 MB one. Bodies are slices of
    pre-made random blocks (no email library per message), so it streams hundreds of MB/s.
    Every message has a unique Message-ID; ~30% are replies (In-Reply-To an earlier one).
    Deterministic for a seed on one machine (uses float math, unlike generate_corpus).
    """
    if n < 0 or folders < 1:
        raise ValueError("n must be >= 0 and folders >= 1")
    text_pool, b64_pool, senders, subjects = _bulk_pools(int(seed))
    rng = Random(f"mailsync-bulk:{seed}:{folders}")
    width = max(2, len(str(folders - 1)))
    names = [f"Bulk{k:0{width}d}" for k in range(folders)]
    cum: list[float] = []
    total = 0.0
    for k in range(folders):  # Zipf-ish: the first folders are the big ones, like INBOX and Sent
        total += 1.0 / (k + 1) ** 0.7
        cum.append(total)
    own_domain = own_address.rsplit("@", 1)[1]
    own_fmt = _fmt_addr(OWN_NAME, own_address)
    span = _T2026 - _T2024 - 86400
    step = span / max(n, 1)
    recent: list[str] = []
    strata: list[int] = []
    plan: list[str] = []
    tlen, blen = len(text_pool), len(b64_pool)
    line = 78  # base64 line incl. CRLF
    log_medium, log_large = math.log(10.0), math.log(20.0)
    for i in range(n):
        if i % _BULK_BLOCK == 0:
            plan = ["text"] * _BULK_BLOCK
            picks = rng.sample(range(_BULK_BLOCK), _BULK_LARGE_PER_BLOCK + _BULK_MEDIUM_PER_BLOCK)
            for j, pos in enumerate(picks):
                plan[pos] = "large" if j < _BULK_LARGE_PER_BLOCK else "medium"
        tier = plan[i % _BULK_BLOCK]
        ts = _T2024 + int(i * step) + rng.randint(0, max(1, int(step)))
        from_hdr, from_addr = senders[rng.randrange(len(senders))]
        dom = from_addr.rsplit("@", 1)[1]
        mid = f"<{i:08d}.{rng.getrandbits(40):010x}.s{seed}@bulk.{own_domain}>"
        date = _fmt_date(ts, 60)
        reply = recent and rng.random() < 0.3
        subject = subjects[rng.randrange(len(subjects))]
        head = [
            f"Return-Path: <{from_addr}>\r\nDelivered-To: {own_address}\r\n"
            f"Received: from mail.{dom} (mail.{dom} [203.0.113.{rng.randint(2, 254)}])\r\n"
            f"\tby mx.{own_domain} (Postfix) with ESMTPS id {rng.getrandbits(40):010X}\r\n"
            f"\tfor <{own_address}>; {date}\r\n"
            f"From: {from_hdr}\r\nTo: {own_fmt}\r\n"
            f"Subject: {'Re: ' if reply else ''}{subject}\r\nDate: {date}\r\nMessage-ID: {mid}\r\n"
        ]
        if reply:
            parent = recent[rng.randrange(len(recent))]
            head.append(f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n")
        head.append("MIME-Version: 1.0\r\n")
        # text body: lognormal, median ~4 KB, clipped
        tsize = min(12_000, max(900, int(rng.lognormvariate(8.30, 0.45))))
        start = text_pool.find(b"\r\n", rng.randrange(tlen - tsize - 1000)) + 2
        end = text_pool.find(b"\r\n", start + tsize) + 2
        text = memoryview(text_pool)[start:end]
        if tier == "text":
            head.append("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
            raw = b"".join((("".join(head)).encode("utf-8"), text))
            kind = "thread" if reply else "plain"
        else:
            if tier == "large":
                if not strata:
                    strata = list(range(_BULK_STRATA))
                    rng.shuffle(strata)
                u = (strata.pop() + rng.random()) / _BULK_STRATA
                asize = int(100_000 * math.exp(u * log_large))
            else:
                asize = int(10_000 * math.exp(rng.random() * log_medium))
            nlines = max(1, asize // line)
            a0 = rng.randrange((blen - nlines * line) // line) * line
            att = memoryview(b64_pool)[a0:a0 + nlines * line]
            boundary = f"----=_Part_{i}_{rng.getrandbits(32):08x}"
            ext, ctype = rng.choice((("pdf", "application/pdf"), ("jpg", "image/jpeg"),
                                     ("zip", "application/zip"),
                                     ("png", "image/png")))
            head.append(f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        f"Content-Transfer-Encoding: 8bit\r\n\r\n")
            mid_part = (f"\r\n--{boundary}\r\nContent-Type: {ctype}; name=\"file{i}.{ext}\"\r\n"
                        f"Content-Disposition: attachment; filename=\"file{i}.{ext}\"\r\n"
                        f"Content-Transfer-Encoding: base64\r\n\r\n").encode("ascii")
            raw = b"".join((("".join(head)).encode("utf-8"), text, mid_part, att,
                            f"\r\n--{boundary}--\r\n".encode("ascii")))
            kind = "attachment"
        r = rng.random()
        if r < 0.80:
            flags: tuple[str, ...] = ("\\Seen",)
        elif r < 0.90:
            flags = ("\\Seen", "\\Answered")
        elif r < 0.95:
            flags = ("\\Seen", "\\Flagged")
        elif r < 0.97:
            flags = ("$Label1",)
        else:
            flags = ()
        folder = names[_bisect(cum, rng.random() * total)]
        recent.append(mid)
        if len(recent) > 64:
            del recent[0]
        yield CorpusMessage(folder, raw, flags, float(ts), kind)


def _bisect(cum: list[float], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
