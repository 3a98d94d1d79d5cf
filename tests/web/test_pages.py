"""Server-rendered pages through HTTP: log in with a form, CSRF on every form, field
errors next to the field with the typed values kept, and security headers."""

from __future__ import annotations

import re

import pytest

from tests.factories import PASSWORD


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


@pytest.fixture
def browser(factory, client):  # type: ignore[no-untyped-def]
    """A client logged in through the login form as the space's MASTER."""
    factory.space("acme", {"master": "master", "viewer": "reporter"})
    page = client.get("/login")
    response = client.post("/login", data={"username": "master", "password": PASSWORD,
                                           "csrf": csrf_of(page.text), "next": "/"},
                           follow_redirects=False)
    assert response.status_code == 303
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()
    return client


def test_pages_send_a_content_security_policy_without_inline_scripts(client):
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in response.text


def test_login_with_a_wrong_password_shows_an_error_and_keeps_the_username(factory, client):
    factory.space("acme", {"master": "master"})
    page = client.get("/login")
    response = client.post("/login", data={"username": "master", "password": "nope-nope",
                                           "csrf": csrf_of(page.text)})
    assert response.status_code == 401
    assert "wrong username or password" in response.text
    assert 'value="master"' in response.text


def test_a_form_without_the_csrf_token_is_refused(browser):
    response = browser.post("/s/acme/servers/new", data={"name": "web-1", "host": "10.0.0.1"})
    assert response.status_code == 403
    assert "form expired" in response.text


def test_server_form_shows_the_error_next_to_the_field_and_keeps_what_was_typed(browser):
    form = browser.get("/s/acme/servers/new")
    response = browser.post("/s/acme/servers/new", data={
        "csrf": csrf_of(form.text), "name": "web-1", "host": "bad host;rm", "port": "22",
        "user": "deploy", "labels": "web"})
    assert response.status_code == 422
    assert re.search(r'data-error-for="host">[^<]*hostname or IP', response.text)
    assert 'value="web-1"' in response.text and 'value="bad host;rm"' in response.text


def test_server_created_through_the_form_is_listed(browser):
    form = browser.get("/s/acme/servers/new")
    response = browser.post("/s/acme/servers/new", data={
        "csrf": csrf_of(form.text), "name": "web-1", "host": "10.0.0.11", "port": "22",
        "user": "deploy", "labels": "web, api"}, follow_redirects=True)
    assert response.status_code == 200
    assert "web-1" in response.text and "10.0.0.11:22" in response.text


def test_output_is_escaped(browser, factory):
    factory.api("master", "POST", "/spaces/acme/environments", expect=403,
                json={"name": "x"})  # masters cannot; owners can: use the API as root
    factory.user("root", is_super=True)
    factory.api("root", "PATCH", "/spaces/acme", json={"display_name": "<b>evil</b>"})
    page = browser.get("/s/acme/")
    assert "<b>evil</b>" not in page.text and "&lt;b&gt;evil&lt;/b&gt;" in page.text


def test_the_interface_speaks_chinese_when_the_browser_asks(client):
    response = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert 'lang="zh-CN"' in response.text
    assert "登录 Shipyard" in response.text
