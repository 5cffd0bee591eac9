"""The webhook SSRF guard's address rules and allow list, and the retry policy."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from nesydet.services.webhooks.policy import next_attempt_at, retry_delay_s
from nesydet.services.webhooks.ssrf import AllowList, RefusedUrl, address_problem, parse_url

NOW = datetime(2026, 2, 2, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.0.0.1", "a private address"),
        ("192.168.0.1", "a private address"),
        ("fc00::1", "a private address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("0.0.0.0", "an unspecified address"),  # noqa: S104  # an address checked, no bind
        ("239.1.1.1", "a multicast address"),
        ("100.64.0.1", "not a public address"),
        ("198.18.0.1", "a private address"),
        ("::ffff:10.0.0.1", "a private address (inside ::ffff:a00:1)"),
        ("::127.0.0.1", "a loopback address (inside ::7f00:1)"),
        ("2002:a9fe:a9fe::", "a cloud metadata address (inside 2002:a9fe:a9fe::)"),
        ("93.184.215.14", None),
        ("2606:4700::6810:84e5", None),
    ],
)
def test_address_rules(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


def test_the_allow_list_takes_names_suffixes_and_networks() -> None:
    allow = AllowList.parse(["Hooks.Internal", "*.corp.example", "10.0.0.0/8", "::1", " "])
    assert allow.allows_host("hooks.internal")
    assert allow.allows_host("a.b.corp.example")
    assert not allow.allows_host("corp.example.evil")
    assert allow.allows_address(ipaddress.ip_address("10.2.3.4"))
    assert allow.allows_address(ipaddress.ip_address("::1"))
    assert not allow.allows_address(ipaddress.ip_address("192.168.0.1"))


@pytest.mark.parametrize(
    "url",
    ["gopher://x/", "http:///path", "http://u:p@host/", "http://host:99999/", "http://a b/"],
)
def test_urls_that_are_no_webhook_urls(url: str) -> None:
    with pytest.raises(RefusedUrl):
        parse_url(url)


def test_delays_double_up_to_the_cap_with_jitter() -> None:
    def delays(rand: float) -> list[float]:
        return [
            retry_delay_s(n, base_s=10, max_delay_s=300, jitter=0.2, rand=lambda: rand)
            for n in range(1, 8)
        ]

    assert delays(0.5) == [10, 20, 40, 80, 160, 300, 300]
    assert delays(0.0) == pytest.approx([8, 16, 32, 64, 128, 240, 240])
    assert delays(1.0) == pytest.approx([12, 24, 48, 96, 192, 360, 360])


def test_no_retry_past_the_horizon() -> None:
    def at(n: int, until: timedelta) -> datetime | None:
        return next_attempt_at(
            n, now=NOW, retry_until=NOW + until, base_s=10, max_delay_s=3600, jitter=0,
        )  # fmt: skip

    assert at(1, timedelta(hours=1)) == NOW + timedelta(seconds=10)
    assert at(3, timedelta(hours=1)) == NOW + timedelta(seconds=40)
    assert at(3, timedelta(seconds=39)) is None
