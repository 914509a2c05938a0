"""The ``[[channel]]`` tables of a config: which account's folders another account gets copies of.

Owns: reading and checking each channel (its name, the two accounts it joins, the folders, the
folder map, the mode and what deletions do), with errors that name the key and the fix. Must not:
run a channel (mailsync.channel does) or read other tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mailsync.config.fields import Context, Table, array_of_tables, describe, show
from mailsync.config.model import AccountConfig, ChannelConfig

CHANNEL_KEYS = ("name", "from", "to", "folders", "exclude", "map", "mode", "delete")
MODES = ("copy", "mirror", "two-way")


def channels_from(ctx: Context, raw: Any, accounts: Sequence[AccountConfig]) -> tuple[ChannelConfig, ...]:
    raw = array_of_tables(ctx, "channel", raw, 'name = "move"\n  from = "old"\n  to = "new"')
    names = {a.name for a in accounts}
    out: list[ChannelConfig] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise ctx.error(f"channel {i + 1}", f"must be a table, got {describe(item)}",
                            'write it as a table: [[channel]] with name, from and to')
        label = f"channel '{item['name']}'" if isinstance(item.get("name"), str) else f"channel {i + 1}"
        t = Table(ctx, label, item, CHANNEL_KEYS)
        t.check_unknown()
        name = t.string("name", required=True, example='"move-to-new"')
        if any(c.name == name for c in out):
            raise t.error("name", f"{show(name)} is the name of another channel too", "give every channel its own name")
        source = t.string("from", required=True, example='"old"')
        dest = t.string("to", required=True, example='"new"')
        for key, account in (("from", source), ("to", dest)):
            if account not in names:
                raise t.error(key, f"names no account: {show(account)}",
                              f"use the name of an [[account]]: {', '.join(sorted(names)) or '(none configured)'}")
        if source == dest:
            raise t.error("to", f"is the account the channel copies from ({show(source)})",
                          "a channel joins two different accounts")
        mode = t.choice("mode", MODES, default="copy")
        delete = t.choice("delete", ("none", "propagate"), default="none" if mode == "copy" else "propagate")
        if mode == "copy" and delete == "propagate":
            raise t.error("delete", "a copy channel does not pass deletions on (each message is copied once, "
                                    "and the copy is the destination's own)",
                          'use mode = "mirror" for a destination that follows the source, deletions included')
        folders = t.string_list("folders", default=("*",), example='["*"]', allow_empty=False,
                                empty_hint='leave folders out to copy every folder, or list patterns: ["INBOX", "Sent"]')
        exclude = t.string_list("exclude", default=(), example='["Trash", "Junk"]')
        folder_map = item.get("map", {})
        if not isinstance(folder_map, dict) or not all(isinstance(k, str) and isinstance(v, str) and k.strip()
                                                       and v.strip() for k, v in folder_map.items()):
            raise t.error("map", f"must be a table of folder names, got {show(folder_map)}",
                          '[channel.map] with lines like "Old Archive" = "Archive/2019"')
        out.append(ChannelConfig(name=name, source=source, dest=dest, folders=folders, exclude=exclude,
                                 folder_map=dict(folder_map), mode=mode, delete=delete))
    return tuple(out)
