"""Logging in: cookie sessions with CSRF protection, personal API tokens, and login
throttling that slows guessing without letting a stranger lock a user out."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from shipyard.models import ApiToken, AuditEvent, BrowserSession, LoginThrottle
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime
from tests.api.conftest import Browser, login
from tests.factories import PASSWORD, Factory, World

ME = "/api/v1/me"
STRANGER = "203.0.113.7"
USERS_HOME = "198.51.100.20"


def row_values(row: object) -> list[str]:
    table = row.__table__  # type: ignore[attr-defined]
    return [str(getattr(row, column.key)) for column in table.columns]


# -- cookie sessions -----------------------------------------------------------------------


def test_password_login_sets_an_httponly_samesite_session_cookie(world: World,
                                                                 browser: Browser) -> None:
    client = browser()
    response = login(client, "developer")
    assert response.status_code == 200, response.text
    [cookie] = [c for c in response.headers.get_list("set-cookie")
                if c.startswith("shipyard_session=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip()
                  for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/"
    assert "secure" not in attributes  # plain http here; see the next test
    me = client.get(ME).json()
    assert me["user"]["username"] == "developer"
    assert me["csrf_token"] == response.json()["csrf_token"]


def test_the_session_cookie_is_secure_when_configured(world: World, runtime: Runtime,
                                                      browser: Browser) -> None:
    runtime.settings.cookie_secure = True
    cookie = login(browser(), "developer").headers["set-cookie"]
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


def test_the_session_is_stored_by_digest_only(world: World, runtime: Runtime,
                                              browser: Browser) -> None:
    client = browser()
    login(client, "developer")
    cookie = client.cookies["shipyard_session"]
    with runtime.sessions() as db:
        [session] = db.scalars(select(BrowserSession)).all()
        assert not any(cookie in value for value in row_values(session))


def test_cookie_writes_need_the_csrf_token(world: World, browser: Browser) -> None:
    client = browser()
    csrf = login(client, "developer").json()["csrf_token"]
    change = {"display_name": "Dev"}

    missing = client.patch(ME, json=change)
    assert (missing.status_code, missing.json()["code"]) == (403, "forbidden")
    assert "CSRF" in missing.json()["message"]
    wrong = client.patch(ME, json=change, headers={"X-CSRF-Token": csrf[::-1]})
    assert wrong.status_code == 403
    assert client.get(ME).json()["user"]["display_name"] == ""  # reads need none

    allowed = client.patch(ME, json=change, headers={"X-CSRF-Token": csrf})
    assert allowed.status_code == 200, allowed.text
    assert client.get(ME).json()["user"]["display_name"] == "Dev"


def test_bearer_token_writes_need_no_csrf_token(world: World, factory: Factory) -> None:
    # A token is never sent by a browser on its own, so it cannot be ridden cross-site.
    factory.api("developer", "PATCH", "/me", json={"display_name": "Dev"})


def test_logout_ends_the_session(world: World, runtime: Runtime, browser: Browser) -> None:
    client = browser()
    csrf = login(client, "developer").json()["csrf_token"]
    cookie = client.cookies["shipyard_session"]
    assert client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    client.cookies.set("shipyard_session", cookie)  # a copy kept by an attacker
    assert client.get(ME).status_code == 401
    with runtime.sessions() as db:
        assert db.scalars(select(BrowserSession)).all() == []


def test_an_expired_session_is_refused(world: World, runtime: Runtime,
                                       browser: Browser) -> None:
    client = browser()
    login(client, "developer")
    with runtime.sessions.begin() as db:
        db.execute(update(BrowserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    response = client.get(ME)
    assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# -- API tokens ----------------------------------------------------------------------------


def test_a_new_token_is_shown_once_and_stored_hashed(world: World, factory: Factory,
                                                     runtime: Runtime) -> None:
    created = factory.api("developer", "POST", "/me/tokens", json={"name": "ci"}, expect=201)
    plain = created["token"]
    assert plain.startswith(created["prefix"])

    listed = factory.client.get("/api/v1/me/tokens", headers=factory.headers("developer"))
    assert plain not in listed.text
    assert all("token" not in item for item in listed.json())
    with runtime.sessions() as db:
        row = db.get_one(ApiToken, created["id"])
        assert not any(plain in value for value in row_values(row))
        assert row.token_hash == hashlib.sha256(plain.encode()).hexdigest()
        for event in db.scalars(select(AuditEvent)):
            assert plain not in f"{event.before} {event.after}"

    me = factory.client.get(ME, headers={"Authorization": f"Bearer {plain}"})
    assert me.json()["user"]["username"] == "developer"


def test_a_revoked_token_is_refused(world: World, factory: Factory) -> None:
    created = factory.api("developer", "POST", "/me/tokens", json={"name": "ci"}, expect=201)
    bearer = {"Authorization": f"Bearer {created['token']}"}
    assert factory.client.get(ME, headers=bearer).status_code == 200

    revoked = factory.api("developer", "DELETE", f"/me/tokens/{created['id']}")
    assert revoked["revoked_at"] is not None
    refused = factory.client.get(ME, headers=bearer)
    assert (refused.status_code, refused.json()["code"]) == (401, "not_authenticated")


def test_nobody_can_revoke_another_users_token(world: World, factory: Factory) -> None:
    created = factory.api("developer", "POST", "/me/tokens", json={"name": "ci"}, expect=201)
    factory.api("root", "DELETE", f"/me/tokens/{created['id']}", expect=404)
    assert factory.client.get(ME, headers={"Authorization": f"Bearer {created['token']}"}
                              ).status_code == 200


def test_a_token_expires(world: World, factory: Factory, runtime: Runtime) -> None:
    created = factory.api("developer", "POST", "/me/tokens", expect=201,
                          json={"name": "ci", "expires_in_days": 1})
    bearer = {"Authorization": f"Bearer {created['token']}"}
    assert factory.client.get(ME, headers=bearer).status_code == 200
    with runtime.sessions.begin() as db:
        row = db.get_one(ApiToken, created["id"])
        assert timedelta(hours=23) < row.expires_at - utcnow() <= timedelta(days=1)
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert factory.client.get(ME, headers=bearer).status_code == 401


def test_a_token_lifetime_must_be_positive(world: World, factory: Factory) -> None:
    refused = factory.api("developer", "POST", "/me/tokens", expect=422,
                          json={"name": "ci", "expires_in_days": 0})
    assert refused["field"] == "expires_in_days"


def test_a_password_can_be_exchanged_for_a_token(world: World, browser: Browser) -> None:
    client = browser()
    response = client.post("/api/v1/auth/token",
                           json={"username": "developer", "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert "shipyard_session" not in client.cookies  # a token, not a session
    me = client.get(ME, headers={"Authorization": f"Bearer {response.json()['token']}"})
    assert me.json()["user"]["username"] == "developer"


def test_a_malformed_or_unknown_bearer_token_is_refused(world: World,
                                                        browser: Browser) -> None:
    client = browser()
    for token in ("", "nonsense", "shp_" + "x" * 43):
        response = client.get(ME, headers={"Authorization": f"Bearer {token}"})
        assert (response.status_code, response.json()["code"]) == (401, "not_authenticated")


# -- throttling ----------------------------------------------------------------------------


def fail_logins(client: TestClient, username: str, times: int) -> None:
    for _ in range(times):
        response = login(client, username, "wrong-password")
        assert response.status_code == 401, response.text


def test_five_failed_logins_lock_the_account_from_that_address(world: World,
                                                               browser: Browser) -> None:
    stranger = browser(STRANGER)
    fail_logins(stranger, "developer", 5)
    for password in (PASSWORD, "wrong-password"):
        locked = login(stranger, "developer", password)
        assert (locked.status_code, locked.json()["code"]) == (429, "rate_limited")
        assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60


def test_a_stranger_cannot_lock_a_user_out_from_another_address(world: World,
                                                                 browser: Browser) -> None:
    fail_logins(browser(STRANGER), "developer", 5)
    assert login(browser(STRANGER), "developer").status_code == 429
    assert login(browser(USERS_HOME), "developer").status_code == 200


def test_a_lockout_expires(world: World, runtime: Runtime, browser: Browser) -> None:
    stranger = browser(STRANGER)
    fail_logins(stranger, "developer", 5)
    assert login(stranger, "developer").status_code == 429
    with runtime.sessions.begin() as db:
        db.execute(update(LoginThrottle).where(LoginThrottle.locked_until.is_not(None))
                   .values(locked_until=utcnow() - timedelta(seconds=1)))
    assert login(stranger, "developer").status_code == 200
    # A success clears the account's count: one more mistake is just a mistake.
    assert login(stranger, "developer", "wrong-password").status_code == 401


def test_unknown_user_and_wrong_password_look_the_same(world: World, factory: Factory,
                                                       browser: Browser) -> None:
    factory.api("root", "PATCH", "/users/reporter", json={"is_active": False})
    client = browser()
    answers = [login(client, username, password) for username, password in
               [("developer", "wrong-password"), ("no-such-user", "wrong-password"),
                ("reporter", PASSWORD)]]  # deactivated
    assert {(a.status_code, a.text) for a in answers} == {(401, answers[0].text)}
    assert answers[0].json()["code"] == "not_authenticated"


def test_unknown_accounts_are_throttled_like_real_ones(world: World,
                                                       browser: Browser) -> None:
    stranger = browser(STRANGER)
    fail_logins(stranger, "no-such-user", 5)
    assert login(stranger, "no-such-user").status_code == 429
