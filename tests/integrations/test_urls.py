"""The outgoing URL guard: only globally routable addresses unless an admin allows
private ones, checked after resolving, and the connection goes to the address checked."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shipyard.integrations import urls
from shipyard.integrations.outbound import Outbound, SendFailed
from tests.integrations.receivers import Receiver

PRIVATE = ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.0.10",
           "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1",
           "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::1"]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", PRIVATE)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not urls.is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_internet_addresses_are_public(address: str) -> None:
    assert urls.is_public(address)


def fixed(*addresses: str) -> urls.Resolver:
    return lambda host, port: list(addresses)


def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(urls.URLRefused, match=r"internal\.example\.com \(10\.0\.0\.5\)"):
        urls.check("https://internal.example.com/hook", allow_private=False,
                   resolver=fixed("93.184.216.34", "10.0.0.5"))
    dest = urls.check("https://hooks.example.com:8443/x", allow_private=False,
                      resolver=fixed("93.184.216.34"))
    assert (dest.host, dest.port, dest.address) == ("hooks.example.com", 8443,
                                                    "93.184.216.34")


def test_the_admin_setting_allows_private_addresses() -> None:
    dest = urls.check("http://127.0.0.1:9000/", allow_private=True)
    assert dest.address == "127.0.0.1"
    assert urls.precheck("http://localhost/", allow_private=True)


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd",
                                 "https://user:pw@example.com/", "https:///nohost",
                                 "https://exa mple.com/", "http://localhost:8080/",
                                 "http://[::1]/", "http://10.0.0.1/"])
def test_urls_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(urls.URLRefused):
        urls.precheck(url, allow_private=False)


def test_the_connection_goes_to_the_address_that_was_checked(
        receiver: Callable[..., Receiver]) -> None:
    """DNS rebinding: the name is resolved once; a second, different answer is never
    asked for, and the request still names the host it was for."""
    hook = receiver()
    answers = iter([["127.0.0.1"]])
    asked: list[str] = []

    def once(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)  # a second lookup would raise StopIteration

    outbound = Outbound(timeout=2, allow_private=True, resolver=once)
    answer = outbound.post(f"http://rebind.example:{hook.port}/x", b"{}",
                           {"Content-Type": "application/json"})
    assert answer.status == 200
    assert asked == ["rebind.example"]
    assert hook.requests[0].headers["host"] == f"rebind.example:{hook.port}"


def test_a_refused_url_is_a_permanent_failure() -> None:
    outbound = Outbound(timeout=1, allow_private=False, resolver=fixed("127.0.0.1"))
    with pytest.raises(SendFailed) as failed:
        outbound.post("http://sneaky.example/", b"", {})
    assert failed.value.permanent
    assert "refused: sneaky.example (127.0.0.1)" in failed.value.message


def test_an_unreachable_receiver_is_a_retryable_failure(
        receiver: Callable[..., Receiver]) -> None:
    hook = receiver()
    port = hook.port
    hook.close()
    with pytest.raises(SendFailed) as failed:
        Outbound(timeout=1, allow_private=True).post(f"http://127.0.0.1:{port}/", b"", {})
    assert not failed.value.permanent
    assert "cannot connect to 127.0.0.1" in failed.value.message
