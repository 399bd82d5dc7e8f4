"""Session signing, CSRF tokens, the language negotiation and the message catalog."""

from __future__ import annotations

import pytest

from api.portal.i18n import LANGS, MESSAGES, negotiate, translator
from api.portal.pages import safe_next
from api.portal.sessions import PortalKeys
from api.settings import load_settings
from zhizao.errors import ConfigError

SECRET = "s" * 32


def keys(secret: str | None = SECRET) -> PortalKeys:
    return PortalKeys(load_settings(None, portal_secret=secret))


def test_a_session_round_trips_and_holds_no_secret() -> None:
    k = keys()
    cookie = k.sign_session(7, 2_000_000_000)
    assert cookie.startswith("7.2000000000.")
    value = k.read_session(cookie, now=1_900_000_000)
    assert value is not None and value.token_id == 7 and value.expires_unix == 2_000_000_000


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: "8" + c[1:],  # another token's id, same signature
        lambda c: c.replace(".2000000000.", ".2100000000."),  # a later expiry
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # the signature itself
        lambda c: c + ".1",
        lambda c: "",
    ],
)
def test_a_tampered_session_is_refused(tamper: object) -> None:
    k = keys()
    cookie = k.sign_session(7, 2_000_000_000)
    assert callable(tamper)
    assert k.read_session(tamper(cookie), now=1_900_000_000) is None


def test_an_expired_session_and_another_key_are_refused() -> None:
    k = keys()
    cookie = k.sign_session(7, 2_000_000_000)
    assert k.read_session(cookie, now=2_000_000_000) is None
    assert keys("t" * 32).read_session(cookie, now=1_900_000_000) is None
    # without a configured secret every start has its own random key
    assert keys(None).read_session(keys(None).sign_session(7, 2_000_000_000), now=1) is None
    assert keys(SECRET).read_session(cookie, now=1) is not None  # the same secret: same key


def test_csrf_tokens_belong_to_their_session() -> None:
    k = keys()
    a, b = k.sign_session(1, 2_000_000_000), k.sign_session(2, 2_000_000_000)
    assert k.csrf_ok(a, k.csrf_for(a))
    assert not k.csrf_ok(a, k.csrf_for(b))
    assert not k.csrf_ok(a, "")
    assert not k.csrf_ok(None, k.csrf_for(a))


def test_a_short_portal_secret_is_refused_with_the_key() -> None:
    with pytest.raises(ConfigError, match="portal_secret") as err:
        load_settings(None, portal_secret="too-short")
    assert "32" in str(err.value)


def test_every_message_has_both_languages() -> None:
    for key, entry in MESSAGES.items():
        assert set(entry) == set(LANGS), key
        assert all(entry[lang].strip() for lang in LANGS), key
    assert translator("en")("login.wrong") != translator("zh")("login.wrong")


@pytest.mark.parametrize(
    ("cookie", "accept", "want"),
    [
        (None, None, "zh"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "de-DE,en;q=0.5,zh;q=0.8", "zh"),
        (None, "zh-CN;q=0.1,en;q=0.9", "en"),
        (None, "fr", "zh"),
        ("en", "zh-CN", "en"),
        ("xx", "en", "en"),
    ],
)
def test_the_language_comes_from_the_cookie_then_accept_language(
    cookie: str | None, accept: str | None, want: str
) -> None:
    assert negotiate(cookie, accept) == want


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("/portal/sites/a?at=1", "/portal/sites/a?at=1"),
        ("/portal", "/portal"),
        ("https://example.org/portal/", "/portal/"),
        ("//example.org/portal/", "/portal/"),
        ("/portal//example.org", "/portal/"),
        ("/api/v1/kpis", "/portal/"),
        ("/portal/\\evil", "/portal/"),
        ("/portal/\r\nSet-Cookie: x", "/portal/"),
        (None, "/portal/"),
    ],
)
def test_return_paths_stay_inside_the_portal(value: str | None, want: str) -> None:
    assert safe_next(value) == want
