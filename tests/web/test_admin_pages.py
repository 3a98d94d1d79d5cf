"""The administration pages through HTTP, as each role sees them: SUPER's spaces and users,
OWNER's members and environments, MASTER's credentials, servers, projects and targets,
the audit log. Forms keep what was typed and show errors next to the field; buttons appear
only where they would work; the server refuses forged requests anyway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from fastapi.testclient import TestClient

from shipyard.auth.rbac import Principal
from shipyard.services import audit, lookup
from shipyard.services.context import unit_of_work
from shipyard.web import i18n
from tests.factories import PASSWORD
from tests.web.test_pages import csrf_of

TEMPLATES = Path(i18n.__file__).parent / "templates"
MY_TEMPLATES = [*TEMPLATES.glob("admin/*.html"), *(
    TEMPLATES / "pages" / name for name in (
        "members.html", "environments.html", "credentials.html", "credential_form.html",
        "projects.html", "project.html", "project_form.html", "target_form.html",
        "audit.html", "server_check.html", "servers.html"))]


class Browser:
    """One logged-in user's browser: cookies, and forms posted with the CSRF token."""

    def __init__(self, app: Any, username: str) -> None:
        self.http = TestClient(app, base_url="http://127.0.0.1")
        page = self.http.get("/login")
        response = self.http.post("/login", data={"username": username, "password": PASSWORD,
                                                  "csrf": csrf_of(page.text), "next": "/"},
                                  follow_redirects=False)
        assert response.status_code == 303, response.text
        self.csrf = csrf_of(self.http.get("/me/tokens").text)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.http.post(url, data={**(data or {}), "csrf": self.csrf}, **kwargs)


@pytest.fixture
def login(app):  # type: ignore[no-untyped-def]
    return lambda username: Browser(app, username)


@pytest.fixture
def acme(factory):  # type: ignore[no-untyped-def]
    factory.space("acme", {"owner": "owner", "master": "master", "dev": "developer",
                           "viewer": "reporter"})
    return factory


def error_for(html: str, name: str) -> str:
    match = re.search(rf'data-error-for="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert match, f"no error shown for {name}"
    return match.group(1)


def ssh_private_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


# -- SUPER: spaces and users -----------------------------------------------------------------

def test_super_creates_a_space_with_an_owner_and_sees_it_listed(factory, login):
    factory.user("root", is_super=True)
    factory.user("alice")
    root = login("root")
    bad = root.post("/admin/spaces", {"name": "Web Team", "display_name": "Web team",
                                      "owner": "alice"})
    assert bad.status_code == 422
    assert "lowercase" in error_for(bad.text, "name")
    assert 'value="Web Team"' in bad.text and 'value="Web team"' in bad.text
    unknown = root.post("/admin/spaces", {"name": "web", "owner": "nobody"})
    assert unknown.status_code == 422 and "nobody" in error_for(unknown.text, "owner")

    created = root.post("/admin/spaces", {"name": "web", "display_name": "Web team",
                                          "owner": "alice"})
    assert created.status_code == 200 and "Space web created." in created.text
    row = re.search(r'<a href="/s/web/members">web</a>.*?</tr>', created.text, re.S)
    assert row and "alice" in row.group(0)
    factory.user("bob")
    assert root.post("/admin/spaces/web/owners", {"username": "bob"}).status_code == 200
    assert [m["role"] for m in factory.api("root", "GET", "/spaces/web/members")] \
        == ["owner", "owner"]


def test_super_creates_searches_and_edits_users(factory, login):
    factory.user("root", is_super=True)
    root = login("root")
    bad = root.post("/admin/users/new", {"username": "carol", "password": "short",
                                         "email": "not-an-email", "display_name": "Carol C"})
    assert bad.status_code == 422
    assert error_for(bad.text, "password") and 'value="Carol C"' in bad.text
    assert 'value="carol"' in bad.text and "short" not in re.findall(r'value="([^"]*)"',
                                                                        bad.text)
    ok = root.post("/admin/users/new", {"username": "carol", "password": "long-enough-pw",
                                        "email": "carol@example.com", "is_super": "on"})
    assert ok.status_code == 200 and "carol@example.com" in ok.text

    found = root.get("/admin/users", params={"q": "car"})
    assert "/admin/users/carol" in found.text and "/admin/users/root" not in found.text

    edit = root.post("/admin/users/carol", {"email": "bad", "display_name": "Carol"})
    assert edit.status_code == 422 and "email" in error_for(edit.text, "email")
    saved = root.post("/admin/users/carol", {"email": "c@example.com",
                                             "display_name": "Carol Jones",
                                             "password": "a-new-password"})
    assert saved.status_code == 200
    user = factory.api("root", "GET", "/users/carol")
    assert (user["display_name"], user["is_super"], user["is_active"]) \
        == ("Carol Jones", False, False)  # unticked boxes mean no


def test_admin_pages_refuse_everyone_but_super(acme, login):
    owner = login("owner")
    assert "/admin/spaces" not in owner.get("/s/acme/members").text
    assert owner.get("/admin/spaces").status_code == 403
    assert owner.get("/admin/users").status_code == 403
    forged = owner.post("/admin/users/new", {"username": "mallory", "password": "x" * 12,
                                             "is_super": "on"})
    assert forged.status_code == 403
    acme.user("root", is_super=True)
    acme.api("root", "GET", "/users/mallory", expect=404)


# -- OWNER: members --------------------------------------------------------------------------

def test_owner_adds_changes_and_removes_members(acme, login):
    acme.user("erin")
    owner = login("owner")
    unknown = owner.post("/s/acme/members", {"username": "nobody", "role": "developer"})
    assert unknown.status_code == 422 and "nobody" in error_for(unknown.text, "username")
    assert 'value="nobody"' in unknown.text

    added = owner.post("/s/acme/members", {"username": "erin", "role": "reporter"})
    assert re.search(r'data-member="erin">.*?value="reporter" selected', added.text, re.S)
    changed = owner.post("/s/acme/members/erin", {"role": "master"})
    assert re.search(r'data-member="erin">.*?value="master" selected', changed.text, re.S)

    last_owner = owner.post("/s/acme/members/owner", {"role": "developer"})
    assert last_owner.status_code == 422
    assert "at least one owner" in error_for(last_owner.text, "role-owner")

    removed = owner.post("/s/acme/members/erin/remove")
    assert removed.status_code == 200 and 'data-member="erin"' not in removed.text


def test_a_reporter_sees_members_without_buttons_and_cannot_forge_changes(acme, login):
    viewer = login("viewer")
    page = viewer.get("/s/acme/members")
    assert page.status_code == 200 and 'data-member="owner"' in page.text
    assert "Change role" not in page.text and "Add a member" not in page.text
    assert "/remove" not in page.text
    forged = viewer.post("/s/acme/members/viewer", {"role": "owner"})
    assert forged.status_code == 403
    roles = {m["username"]: m["role"] for m in acme.api("owner", "GET", "/spaces/acme/members")}
    assert roles["viewer"] == "reporter"


# -- OWNER: environments ---------------------------------------------------------------------

def order_of(html: str) -> list[str]:
    return re.findall(r'data-environment="([^"]+)"', html)


def test_owner_adds_renames_reorders_and_deletes_environments(acme, login):
    owner = login("owner")
    for name in ("dev", "prod", "test"):
        assert owner.post("/s/acme/environments", {"name": name}).status_code == 200
    bad = owner.post("/s/acme/environments", {"name": "Pre Prod", "position": "5"})
    assert bad.status_code == 422 and error_for(bad.text, "name")
    assert 'value="Pre Prod"' in bad.text and 'value="5"' in bad.text

    moved = owner.post("/s/acme/environments/test/move", {"direction": "up"})
    assert order_of(moved.text) == ["dev", "test", "prod"]
    renamed = owner.post("/s/acme/environments/test", {"name": "qa", "position": "10"})
    assert order_of(renamed.text) == ["dev", "qa", "prod"]
    clash = owner.post("/s/acme/environments/qa", {"name": "prod", "position": "10"})
    assert clash.status_code == 422 and "already exists" in error_for(clash.text, "name")

    acme.api("master", "POST", "/spaces/acme/projects", expect=201,
             json={"name": "shop", "repo": "https://git.example.com/shop.git",
                   "default_branch": "main"})
    acme.api("master", "POST", "/spaces/acme/projects/shop/targets", expect=201,
             json={"environment": "prod", "webroot": "/srv/www", "releases": "/srv/rel"})
    refused = owner.post("/s/acme/environments/prod/delete")
    assert refused.status_code == 409
    assert "used by the targets of shop" in error_for(refused.text, "prod")
    assert "prod" in order_of(refused.text)
    deleted = owner.post("/s/acme/environments/dev/delete")
    assert order_of(deleted.text) == ["qa", "prod"]


def test_a_master_sees_environments_but_cannot_change_them(acme, login):
    acme.api("owner", "POST", "/spaces/acme/environments", json={"name": "prod"}, expect=201)
    master = login("master")
    page = master.get("/s/acme/environments")
    assert order_of(page.text) == ["prod"]
    assert "Add an environment" not in page.text and "/delete" not in page.text
    assert master.post("/s/acme/environments/prod/delete").status_code == 403
    assert master.post("/s/acme/environments", {"name": "qa"}).status_code == 403
    assert master.post("/s/acme/environments/prod/move",
                       {"direction": "up"}).status_code == 403
    assert [e["name"] for e in acme.api("owner", "GET", "/spaces/acme/environments")] \
        == ["prod"]


# -- MASTER: credentials ---------------------------------------------------------------------

SECRET = "s3cr3t-TOKEN-never-shown"


def test_credentials_are_added_and_replaced_but_never_shown(acme, login):
    master = login("master")
    added = master.post("/s/acme/credentials/new", {"name": "git-token", "kind": "token",
                                                    "username": "ci", "secret": SECRET})
    assert added.status_code == 200 and 'data-credential="git-token"' in added.text
    assert "stored" in added.text and SECRET not in added.text
    form = master.get("/s/acme/credentials/git-token")
    assert form.status_code == 200 and SECRET not in form.text and 'value="ci"' in form.text

    bad_key = "not a key but " + SECRET
    refused = master.post("/s/acme/credentials/new", {"name": "deploy-key", "kind": "ssh_key",
                                                      "secret": bad_key})
    assert refused.status_code == 422
    assert "private key" in error_for(refused.text, "secret")
    assert 'value="deploy-key"' in refused.text and SECRET not in refused.text

    key = ssh_private_key()
    master.post("/s/acme/credentials/new", {"name": "deploy-key", "kind": "ssh_key",
                                            "secret": key})
    listed = master.get("/s/acme/credentials").text
    assert "SHA256:" in listed and "ssh-ed25519 AAAA" in listed
    assert "PRIVATE KEY" not in listed and key.splitlines()[1] not in listed

    replaced = master.post("/s/acme/credentials/git-token", {"username": "ci",
                                                             "secret": "another-secret"})
    assert "secret replaced" in replaced.text and "another-secret" not in replaced.text


def test_a_credential_in_use_is_not_deleted(acme, login):
    master = login("master")
    master.post("/s/acme/credentials/new", {"name": "key", "kind": "ssh_key",
                                            "secret": ssh_private_key()})
    acme.api("master", "POST", "/spaces/acme/servers", expect=201,
             json={"name": "web-1", "host": "10.0.0.1", "credential": "key"})
    refused = master.post("/s/acme/credentials/key/delete")
    assert refused.status_code == 409 and "server web-1" in error_for(refused.text, "key")


def test_a_reporter_sees_credentials_without_buttons_or_secrets(acme, login):
    acme.api("master", "POST", "/spaces/acme/credentials", expect=201,
             json={"name": "git-token", "kind": "token", "secret": SECRET})
    viewer = login("viewer")
    page = viewer.get("/s/acme/credentials")
    assert 'data-credential="git-token"' in page.text and SECRET not in page.text
    assert "Add credential" not in page.text and "/delete" not in page.text
    assert viewer.get("/s/acme/credentials/new").status_code == 403
    assert viewer.post("/s/acme/credentials/git-token/delete").status_code == 403
    forged = viewer.post("/s/acme/credentials/new", {"name": "mine", "kind": "token",
                                                     "secret": "x"})
    assert forged.status_code == 403
    assert [c["name"] for c in acme.api("master", "GET", "/spaces/acme/credentials")] \
        == ["git-token"]


# -- MASTER: servers check -------------------------------------------------------------------

def test_server_check_reports_each_selected_host(acme, login):
    for name in ("web-1", "web-2"):
        acme.api("master", "POST", "/spaces/acme/servers", expect=201,
                 json={"name": name, "host": "10.0.0.1"})
    master = login("master")
    assert 'data-testid="check-all"' in master.get("/s/acme/servers").text
    result = master.post("/s/acme/servers/check", {"scope": "selected", "servers": ["web-2"]})
    assert result.status_code == 200
    assert 'data-host="web-2" data-check="ssh" data-ok="false"' in result.text
    assert "no SSH key credential" in result.text and 'data-host="web-1"' not in result.text
    everything = master.post("/s/acme/servers/check", {"scope": "all"})
    assert re.findall(r'data-host="([^"]+)" data-check="ssh"', everything.text) \
        == ["web-1", "web-2"]

    viewer = login("viewer")
    assert "check-all" not in viewer.get("/s/acme/servers").text
    assert viewer.post("/s/acme/servers/check", {"scope": "all"}).status_code == 403


def test_checks_reach_real_hosts_record_their_keys_and_read_the_repo(factory, login, fleet):
    host = fleet.hosts[0]
    factory.space("lab", {"boss": "owner", "lead": "master"})
    factory.api("boss", "POST", "/spaces/lab/environments", json={"name": "test"}, expect=201)
    factory.api("lead", "POST", "/spaces/lab/credentials", expect=201,
                json={"name": "fleet-key", "kind": "ssh_key",
                      "secret": host.client_private_key})
    factory.api("lead", "POST", "/spaces/lab/servers", expect=201,
                json={"name": host.name, "host": host.address, "port": host.port,
                      "user": host.user, "credential": "fleet-key"})
    repo = factory.repo("lab")
    factory.api("lead", "POST", "/spaces/lab/projects", expect=201,
                json={"name": "app", "repo": str(repo), "default_branch": "main"})
    factory.api("lead", "POST", "/spaces/lab/projects/app/targets", expect=201,
                json={"environment": "test", "servers": [host.name],
                      "webroot": "/srv/adminpages/www", "releases": "/srv/adminpages/rel"})
    lead = login("lead")
    servers = lead.post("/s/lab/servers/check", {"scope": "all"})
    assert servers.status_code == 200 and "All checks passed" in servers.text, servers.text
    assert "recorded on first contact: ssh-ed25519 SHA256:" in servers.text
    again = lead.post("/s/lab/servers/check", {"scope": "all"})
    assert "matches the recorded key" in again.text

    target = lead.post("/s/lab/projects/app/targets/test/check")
    assert target.status_code == 200, target.text
    assert 'data-check="git_access" data-ok="true"' in target.text
    assert f'data-host="{host.name}" data-check="releases_writable" data-ok="true"' \
        in target.text


# -- MASTER: projects and targets ------------------------------------------------------------

def setup_inventory(factory: Any) -> None:
    for env in ("test", "prod"):
        factory.api("owner", "POST", "/spaces/acme/environments", json={"name": env},
                    expect=201)
    for name in ("web-1", "web-2"):
        factory.api("master", "POST", "/spaces/acme/servers", expect=201,
                    json={"name": name, "host": "10.0.0.1", "labels": ["web"]})


PROJECT = {"name": "shop", "repo": "https://git.example.com/shop.git",
           "default_branch": "main", "description": "<script>alert(1)</script>",
           "post_deploy": "npm ci", "excludes": ".git\nnode_modules",
           "variables": "NODE_ENV=production"}
TARGET = {"environment": "test", "servers": ["web-2"], "labels": "", "webroot": "/srv/www/shop",
          "releases": "/srv/releases/shop", "keep": "5", "batch": "1", "pause": "5s",
          "parallel": "10", "on_failure": "stop", "required": "1",
          "developers_can_rollback": "on", "post_release": "echo done"}


def test_master_creates_a_project_and_its_targets_through_forms(acme, login):
    setup_inventory(acme)
    master = login("master")
    bad = master.post("/s/acme/projects/new", {**PROJECT, "default_branch": "bad..branch"})
    assert bad.status_code == 422 and error_for(bad.text, "default_branch")
    assert 'value="https://git.example.com/shop.git"' in bad.text and "npm ci" in bad.text
    assert 'value="bad..branch"' in bad.text
    bad = master.post("/s/acme/projects/new", {**PROJECT, "variables": "NODE_ENV=prod\noops"})
    assert "line 2 is not KEY=value" in error_for(bad.text, "variables")
    assert "NODE_ENV=prod\noops" in bad.text

    created = master.post("/s/acme/projects/new", PROJECT)
    assert created.status_code == 200 and "Project shop created." in created.text
    assert "<script>alert(1)</script>" not in created.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in created.text
    assert "NODE_ENV=production" in created.text

    invalid = master.post("/s/acme/projects/shop/targets/new",
                          {**TARGET, "webroot": "relative/path"})
    assert invalid.status_code == 422 and "absolute" in error_for(invalid.text, "webroot")
    assert re.search(r'value="web-2"\s+checked', invalid.text)
    assert not re.search(r'value="web-1"\s+checked', invalid.text)
    assert 'value="relative/path"' in invalid.text and "echo done" in invalid.text
    slow = master.post("/s/acme/projects/shop/targets/new", {**TARGET, "pause": "soon"})
    assert "duration" in error_for(slow.text, "pause") and 'value="soon"' in slow.text

    added = master.post("/s/acme/projects/shop/targets/new", TARGET)
    assert added.status_code == 200 and 'data-target="test"' in added.text
    target = acme.api("master", "GET", "/spaces/acme/projects/shop/targets/test")
    assert target["servers"] == ["web-2"] and target["keep"] == 5
    assert target["strategy"]["batch"] == 1 and target["strategy"]["pause"] == 5
    assert target["approval"]["required"] == 1
    assert "/s/acme/tasks/new?project=shop&amp;environment=test" in added.text
    assert "/s/acme/projects/shop/targets/test/releases" in added.text

    form = master.get("/s/acme/projects/shop/targets/test/edit")
    assert 'value="5s"' in form.text and re.search(r'value="web-2"\s+checked', form.text)
    edited = master.post("/s/acme/projects/shop/targets/test/edit",
                         {**TARGET, "environment": "prod", "labels": "web", "batch": ""})
    assert 'data-target="prod"' in edited.text and "label: web" in edited.text

    project_form = master.get("/s/acme/projects/shop/edit")
    assert "node_modules" in project_form.text
    renamed = master.post("/s/acme/projects/shop/edit", {**PROJECT, "default_branch": "trunk"})
    assert renamed.status_code == 200 and "<code>trunk</code>" in renamed.text

    gone = master.post("/s/acme/projects/shop/targets/prod/delete")
    assert 'data-target="prod"' not in gone.text


def test_project_page_offers_each_role_only_what_it_may_do(acme, login):
    setup_inventory(acme)
    acme.api("master", "POST", "/spaces/acme/projects", expect=201,
             json={"name": "shop", "repo": "https://git.example.com/shop.git",
                   "default_branch": "main"})
    acme.api("master", "POST", "/spaces/acme/projects/shop/targets", expect=201,
             json={"environment": "test", "webroot": "/srv/www", "releases": "/srv/rel"})
    master_page = login("master").get("/s/acme/projects/shop").text
    dev_page = login("dev").get("/s/acme/projects/shop").text
    viewer = login("viewer")
    viewer_page = viewer.get("/s/acme/projects/shop").text
    for manage in ("Add target", "Edit project", "targets/test/edit", "Check target"):
        assert manage in master_page
        assert manage not in dev_page and manage not in viewer_page
    assert "Deploy" in master_page and "Deploy" in dev_page and "Deploy" not in viewer_page
    assert "targets/test/releases" in viewer_page
    assert "New project" not in viewer.get("/s/acme/projects").text

    forged = viewer.post("/s/acme/projects/shop/targets/new", {**TARGET, "environment": "prod"})
    assert forged.status_code == 403
    assert viewer.post("/s/acme/projects/shop/delete").status_code == 403
    assert viewer.post("/s/acme/projects/shop/targets/test/check").status_code == 403
    assert [t["environment"] for t in
            acme.api("master", "GET", "/spaces/acme/projects/shop/targets")] == ["test"]


def test_owner_gives_a_project_role_that_overrides_the_space_role(acme, login):
    acme.api("master", "POST", "/spaces/acme/projects", expect=201,
             json={"name": "shop", "repo": "https://git.example.com/shop.git",
                   "default_branch": "main"})
    owner = login("owner")
    unknown = owner.post("/s/acme/projects/shop/members", {"username": "ghost",
                                                           "role": "master"})
    assert unknown.status_code == 422 and 'value="ghost"' in unknown.text
    assert "ghost" in error_for(unknown.text, "username")
    given = owner.post("/s/acme/projects/shop/members", {"username": "viewer",
                                                         "role": "master"})
    assert re.search(r'data-member="viewer"><td>viewer</td><td>master', given.text)
    assert "shop</a>: master" in owner.get("/s/acme/members").text
    assert "Edit project" in login("viewer").get("/s/acme/projects/shop").text

    master = login("master")
    assert "Set project role" not in master.get("/s/acme/projects/shop").text
    assert master.post("/s/acme/projects/shop/members/viewer/remove").status_code == 403
    removed = owner.post("/s/acme/projects/shop/members/viewer/remove")
    assert 'data-member="viewer"' not in removed.text


# -- OWNER: audit ----------------------------------------------------------------------------

def test_audit_log_filters_and_pages(acme, login, runtime):
    acme.api("owner", "POST", "/spaces/acme/environments", json={"name": "prod"}, expect=201)
    acme.api("master", "POST", "/spaces/acme/servers", expect=201,
             json={"name": "web-1", "host": "10.0.0.1"})
    with unit_of_work(runtime) as ctx:
        ctx.who = Principal(user_id=0, username="robot", is_super=True)
        space = lookup.space(ctx, "acme")
        for i in range(55):
            audit.record(ctx, "space.update", "space", "acme", space_id=space.id,
                         before={"display_name": f"v{i}"}, after={"display_name": f"v{i + 1}"})
    owner = login("owner")
    page = owner.get("/s/acme/audit")
    assert page.status_code == 200 and 'data-testid="older"' in page.text
    assert '&#34;display_name&#34;: &#34;v55&#34;' in page.text  # compact JSON, escaped
    older = owner.get(re.search(r'href="([^"]+)" rel="next"', page.text).group(1)
                      .replace("&amp;", "&"))
    assert "server.create" in older.text and "v55" not in older.text

    servers = owner.get("/s/acme/audit", params={"action": "server."})
    assert re.findall(r'data-action="([^"]+)"', servers.text) == ["server.create"]
    by_owner = owner.get("/s/acme/audit", params={"actor": "owner"})
    assert set(re.findall(r'data-action="([^"]+)"', by_owner.text)) == {"environment.create"}
    envs = owner.get("/s/acme/audit", params={"object_type": "environment"})
    assert re.findall(r'data-action="([^"]+)"', envs.text) == ["environment.create"]
    assert 'value="environment" selected' in envs.text

    master = login("master")
    assert "/s/acme/audit" not in master.get("/s/acme/servers").text
    assert master.get("/s/acme/audit").status_code == 403


# -- language --------------------------------------------------------------------------------

def test_pages_speak_chinese_when_the_browser_asks(acme, login):
    owner = login("owner")
    zh = {"Accept-Language": "zh-CN,zh;q=0.9"}
    page = owner.get("/s/acme/environments", headers=zh)
    assert "添加环境" in page.text and "Add an environment" not in page.text
    members = owner.get("/s/acme/members", headers=zh)
    assert "更改角色" in members.text and "所有者" in members.text


def test_every_string_in_these_templates_has_a_chinese_translation():
    catalog: dict[str, str] = {}
    for po in (i18n.LOCALE_DIR / "zh_CN").glob("*.po"):
        with po.open("rb") as f:
            catalog.update({m.id: m.string for m in read_po(f) if m.id and m.string})
    single = re.compile(r"""\b_\(\s*(?:"([^"]*)"|'([^']*)')""")
    plural = re.compile(r'ngettext\(\s*"([^"]*)",\s*"([^"]*)"')
    missing = []
    for template in MY_TEMPLATES:
        text = template.read_text()
        messages = [a or b for a, b in single.findall(text)]
        messages += [m for pair in plural.findall(text) for m in pair]
        missing += [(template.name, m) for m in messages if m not in catalog]
    assert not missing
    for role in ("owner", "master", "developer", "reporter", "ssh_key", "token"):
        assert role in catalog  # shown through _(variable)
