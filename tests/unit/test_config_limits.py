"""max_age, max_size, max_download_rate and throttle_max_wait in an account's config
(mailsync.config.limits): values read, and every bad one refused naming the key, the value and the fix."""

from __future__ import annotations

import pytest

from mailsync.config.limits import parse_age, parse_rate, parse_size
from mailsync.config.loader import config_from_mapping
from mailsync.errors import ConfigError


@pytest.mark.parametrize("text, seconds", [("90d", 90 * 86400), ("36h", 36 * 3600), ("2w", 14 * 86400),
                                           ("6m", 180 * 86400), ("1y", 365 * 86400), (" 7 D ", 7 * 86400)])
def test_ages(text, seconds):
    assert parse_age(text) == seconds


@pytest.mark.parametrize("value, size", [("25MB", 25_000_000), ("512KB", 512_000), ("1.5GB", 1_500_000_000),
                                         ("2MiB", 2 * 1024 * 1024), (4096, 4096), ("100", 100)])
def test_sizes(value, size):
    assert parse_size(value) == size


def test_rates():
    assert parse_rate("500KB/s") == 500_000 and parse_rate(1000) == 1000 and parse_rate("1MB") == 1_000_000


def _load(tmp_path, **keys):
    doc = {"account": [{"name": "a", "host": "127.0.0.1", "tls": "none", "username": "u", "password": "env:P",
                        **keys}]}
    return config_from_mapping(doc, path=tmp_path / "c.toml").accounts[0]


def test_the_keys_reach_the_account(tmp_path):
    acc = _load(tmp_path, max_age="90d", max_size="25MB", max_download_rate="1MB/s", throttle_max_wait=60)
    assert (acc.max_age, acc.max_size, acc.max_download_rate, acc.throttle_max_wait) == (
        90 * 86400, 25_000_000, 1_000_000, 60.0)
    plain = _load(tmp_path)
    assert (plain.max_age, plain.max_size, plain.max_download_rate, plain.throttle_max_wait) == (None, None, None, 900.0)


@pytest.mark.parametrize("key, value, words", [
    ("max_age", "90x", "an age is a whole number and a unit"),
    ("max_age", "0d", "greater than 0"),
    ("max_age", 90, "must be a string such as"),
    ("max_size", "25 parsecs", "a size is a number and a unit"),
    ("max_size", -5, "greater than 0"),
    ("max_size", True, "a size is a number of bytes"),
    ("max_download_rate", "fast", "a rate is bytes a second"),
    ("throttle_max_wait", -1, "0 or more"),
])
def test_bad_values_name_the_key_the_value_and_the_fix(tmp_path, key, value, words):
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, **{key: value})
    text = str(info.value)
    assert f"key '{key}'" in text and words in text and "fix:" in text


def test_the_sample_config_shows_the_limits_and_they_load_uncommented(tmp_path):
    import re

    from mailsync.config.limits import LIMIT_KEYS
    from mailsync.config.loader import load_config
    from mailsync.config.sample import SAMPLE_CONFIG

    text = SAMPLE_CONFIG
    for key in LIMIT_KEYS:
        assert re.search(rf"^# {key} = ", text, re.M), key
        text = re.sub(rf"^# ({key} = )", r"\1", text, flags=re.M)
    path = tmp_path / "c.toml"
    path.write_text(text)
    path.chmod(0o600)
    acc = load_config(path).accounts[0]
    assert (acc.max_age, acc.max_size, acc.max_download_rate) == (90 * 86400, 25_000_000, 500_000)
