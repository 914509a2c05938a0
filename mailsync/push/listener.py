"""Runs one PushSession (protocol.py) over one PushClient (client.py): the thin shell between them.

Owns: the loop "wait for a response or the session's deadline, whichever comes first; feed it;
carry the actions out", on the injected clock. Must not: make protocol decisions (the session
does), reconnect (the daemon does, with backoff), or touch the store.

The read in progress is kept across timer wake-ups rather than cancelled, so a response that is
half received when a timer fires is never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from mailsync.errors import MailsyncError
from mailsync.push.client import PushClient
from mailsync.push.clock import Clock
from mailsync.push.protocol import Fail, PushSession, Ready, Refused, Send, Wake


@dataclass(frozen=True)
class Ended:
    """How a session ended: Fail (reconnect with backoff) or Refused (plan again without it)."""

    action: Fail | Refused


async def run_session(client: PushClient, session: PushSession, clock: Clock,
                      on_action: Callable[[Wake | Ready], None]) -> Ended:
    """Drive `session` over `client` until it fails or is refused; Wake and Ready go to `on_action`.
    Cancel the task to stop it (the caller closes the client)."""
    read: asyncio.Task | None = None
    try:
        actions = session.start(clock.now())
        while True:
            for action in actions:
                if isinstance(action, Send):
                    try:
                        await client.send(action.data, action.what)
                    except MailsyncError as exc:
                        return Ended(Fail(str(exc)))
                elif isinstance(action, (Fail, Refused)):
                    return Ended(action)
                else:
                    on_action(action)
            if read is None:
                read = asyncio.ensure_future(client.read_event())
            deadline = session.deadline()
            if deadline is None:
                await asyncio.wait({read})
            else:
                timer = asyncio.ensure_future(clock.sleep_until(deadline))
                try:
                    await asyncio.wait({read, timer}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    timer.cancel()
            now = clock.now()
            if read.done():
                done, read = read, None
                try:
                    ev = done.result()
                except MailsyncError as exc:
                    return Ended(Fail(str(exc)))
                actions = session.receive(ev, now)
            else:
                actions = session.tick(now)
    finally:
        if read is not None and not read.done():
            read.cancel()
            with contextlib.suppress(BaseException):
                await read
