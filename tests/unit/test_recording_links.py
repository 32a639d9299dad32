"""Signed recording links (a signature over the call id and the expiry) and
the base URL links start with when api.public_url is not set."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import pytest

from controller.config import ApiConfig, load_config
from controller.errors import ConfigError
from controller.recording_links import LINK_PATH, SIGNATURE_CHARS, LinkCheck, RecordingLinks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CALL = "5f0c2a8e-0d7e-4c53-9a53-2f7c1d0b9e11"
NOW = 1_795_260_000.0


def parts(link: str) -> tuple[str, str, int, str]:
    url = urlsplit(link)
    query = parse_qs(url.query)
    return (f"{url.scheme}://{url.netloc}", url.path.removeprefix(LINK_PATH),
            int(query["expires"][0]), query["signature"][0])


def test_a_link_names_the_call_and_its_expiry_and_checks_until_then() -> None:
    links = RecordingLinks.for_daemon(SECRET, "https://pbx.example.com:8080/", 3600)
    link, expires = links.link(CALL, NOW)
    base, call_id, expires_in_link, signature = parts(link)
    assert (base, call_id, expires_in_link, expires) == (
        "https://pbx.example.com:8080", CALL, expires, int(NOW) + 3600)
    assert len(signature) == SIGNATURE_CHARS
    assert links.check(CALL, expires, signature, NOW) is LinkCheck.VALID
    assert links.check(CALL, expires, signature, expires - 1) is LinkCheck.VALID
    assert links.check(CALL, expires, signature, expires) is LinkCheck.EXPIRED


def test_a_tampered_link_is_invalid_whether_or_not_it_expired() -> None:
    links = RecordingLinks.for_daemon(SECRET, "http://127.0.0.1:8080", 3600)
    link, expires = links.link(CALL, NOW)
    _, _, _, signature = parts(link)
    other_call = "6f0c2a8e-0d7e-4c53-9a53-2f7c1d0b9e11"
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    for call_id, at, sig in ((other_call, expires, signature),  # another call's recording
                             (CALL, expires + 86400, signature),  # a longer life
                             (CALL, expires, flipped),
                             (CALL, expires, signature[:-1]),
                             (CALL, expires, ""),
                             (CALL, expires, "é" * SIGNATURE_CHARS)):  # not even ASCII
        assert links.check(call_id, at, sig, NOW) is LinkCheck.INVALID, (call_id, at, sig)
        assert links.check(call_id, at, sig, at + 1) is LinkCheck.INVALID, (call_id, at, sig)


def test_the_key_is_the_secrets_own_and_never_the_secret_itself() -> None:
    ours = RecordingLinks.for_daemon(SECRET, "http://x", 60)
    other = RecordingLinks.for_daemon(SECRET[:-1] + "x", "http://x", 60)
    link, expires = ours.link(CALL, NOW)
    signature = parts(link)[3]
    assert other.check(CALL, expires, signature, NOW) is LinkCheck.INVALID
    assert RecordingLinks.for_daemon(SECRET, "http://x", 60).check(
        CALL, expires, signature, NOW) is LinkCheck.VALID  # the same secret: the same key
    # Unsigned daemons draw a key: two of them never accept each other's links.
    first, second = (RecordingLinks.for_daemon(None, "http://x", 60) for _ in range(2))
    link, expires = first.link(CALL, NOW)
    assert second.check(CALL, expires, parts(link)[3], NOW) is LinkCheck.INVALID
    assert SECRET not in repr(ours)


@pytest.mark.parametrize(("host", "public_url", "base"), [
    ("127.0.0.1", "", "http://127.0.0.1:8080"),
    ("::1", "", "http://[::1]:8080"),
    ("0.0.0.0", "", f"http://{socket.getfqdn()}:8080"),
    ("127.0.0.1", "https://pbx.example.com/callconnect/", "https://pbx.example.com/callconnect"),
])
def test_links_start_at_the_public_url_else_at_the_bind_address(
        host: str, public_url: str, base: str) -> None:
    assert ApiConfig(host=host, public_url=public_url).base_url() == base


def test_retention_and_link_settings_are_checked() -> None:
    config = load_config(environ={"CALLCONNECT_RETENTION_CALLS_DAYS": "400",
                                  "CALLCONNECT_API_RECORDING_LINK_HOURS": "2"})
    assert (config.retention.calls_days, config.api.recording_link_hours) == (400.0, 2.0)
    for env, setting in (({"CALLCONNECT_RETENTION_RECORDINGS_DAYS": "-1"}, "retention.recordings_days"),
                         ({"CALLCONNECT_API_RECORDING_LINK_HOURS": "0"}, "api.recording_link_hours"),
                         ({"CALLCONNECT_API_PUBLIC_URL": "pbx.example.com"}, "api.public_url")):
        with pytest.raises(ConfigError) as refused:
            load_config(environ=env)
        assert refused.value.details["setting"] == setting
