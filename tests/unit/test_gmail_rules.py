"""The pure parts of the Gmail rules (mailsync.sync.gmail): which label a folder shows, the label
Gmail leaves out put back, and rule N5's split of new UIDs into placed and downloaded."""

from __future__ import annotations

import pytest

from mailsync.imap.responses import FetchItem
from mailsync.sync import gmail


@pytest.mark.parametrize("raw,use,label", [
    ("INBOX", None, "\\Inbox"),
    ("inbox", None, "\\Inbox"),
    ("[Gmail]/All Mail", "\\All", None),
    ("[Gmail]/Sent Mail", "\\Sent", "\\Sent"),
    ("[Gmail]/Drafts", "\\Drafts", "\\Draft"),
    ("[Gmail]/Starred", "\\Flagged", "\\Starred"),
    ("[Gmail]/Spam", "\\Junk", "\\Spam"),
    ("[Gmail]/Trash", "\\Trash", "\\Trash"),
    ("[Gmail]/Important", "\\Important", "\\Important"),
    ("Work/Projects", None, "Work/Projects"),
    ("Entw&APw-rfe", None, "Entw&APw-rfe"),
])
def test_folder_label(raw, use, label):
    assert gmail.folder_label(raw, use) == label


def test_with_label_puts_the_folders_own_label_back_once():
    assert gmail.with_label(("Work",), "\\Inbox") == ("Work", "\\Inbox")
    assert gmail.with_label(("\\Inbox",), "\\Inbox") == ("\\Inbox",)
    assert gmail.with_label((), None) == ()
    assert gmail.with_label(None, "Work") is None  # no labels read: nothing to say


def _item(uid, msgid=None, labels=None):
    return FetchItem(1, uid, (), None, None, None, None, None, msgid, None, labels)


def test_labels_of_takes_items_with_an_id_and_labels():
    items = [_item(1, 10, ("Work",)), _item(2, None, ("Work",)), _item(3, 30, None)]
    assert gmail.labels_of(items, "\\Inbox") == {10: ("Work", "\\Inbox")}


def test_n5_split_places_known_ids_and_downloads_the_rest_in_uid_order():
    listing = {1: _item(1, 10), 2: _item(2, 20), 3: _item(3, None), 5: _item(5, 50)}
    known = {20: "sha20", 50: "sha50"}
    assert gmail.split_known(listing, known, None) == ([(2, "sha20"), (5, "sha50")], [1, 3])
    # wanted UIDs the listing left out are downloaded (the FETCH decides whether they are there)
    assert gmail.split_known(listing, known, [5, 4, 1]) == ([(5, "sha50")], [1, 4])
    assert gmail.split_known({}, {}, None) == ([], [])
