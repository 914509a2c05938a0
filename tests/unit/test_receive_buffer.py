"""receive_buffer_request: when a connection's receive buffer is set, and to what."""

from mailsync.imap.transport import RECEIVE_BUFFER, RTT_LOCAL_US, receive_buffer_request

MB = 1 << 20


def test_a_local_link_gets_the_large_buffer():
    assert receive_buffer_request(36, 128 * 1024, 4 * MB) == RECEIVE_BUFFER == 4 * MB


def test_a_wan_link_keeps_autotuning():
    assert receive_buffer_request(RTT_LOCAL_US, 128 * 1024, 64 * MB) is None
    assert receive_buffer_request(40_000, 128 * 1024, 64 * MB) is None


def test_no_round_trip_measured_yet_changes_nothing():
    assert receive_buffer_request(0, 128 * 1024, 4 * MB) is None


def test_the_system_limit_caps_the_request():
    assert receive_buffer_request(50, 128 * 1024, 1 * MB) == 1 * MB


def test_never_smaller_than_what_the_socket_has():
    # the common default limit (212,992 bytes) would give 425,984: less than an autotuned 6 MB
    assert receive_buffer_request(50, 6 * MB, 212_992) is None
    assert receive_buffer_request(50, 8 * MB, 4 * MB) is None  # already there
