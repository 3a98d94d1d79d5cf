"""``shipyard apply -f shipyard.yaml``: make one space's setup match a file, idempotently.

Read the file, validate all of it (with the services' own input models, so the rules live
once) and report every problem by its path (``projects[0].targets[1].webroot: must be an
absolute path``); read the space's current state through the API; plan, as a pure
function, what to create and which fields to patch; only then write. A file that is
invalid, or that refers to a server, credential or environment that exists neither in the
file nor in the space, changes nothing. Apply never deletes.

Semantics, per object (keyed by name; targets by project and environment):

* missing: created. Present: compared with the file after normalising both through the
  same model (defaults filled in, ``10s`` == ``10.0``, labels and target servers as sets);
  fields left out of the file mean their defaults. Patched with the changed fields only.
* environments: the list is the order, lowest first; positions 0, 10, 20...
* credentials: secrets are write-only, so: ``ssh_key`` is unchanged while the stored
  fingerprint matches the key file's; ``token``/``password``/``secret`` are re-sent only
  with ``--update-secrets`` (and then count as updated). Give the secret as
  ``private_key_file``/``secret_file`` (relative to the YAML file; ``~`` works),
  ``secret_env`` (an environment variable), or inline ``secret`` (not in git, please).
* the space must exist, unless the file says ``create_space: true``: then apply creates
  it (the server allows that to SUPER only).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, model_validator

from shipyard.cli.client import ApiClient, path
from shipyard.deploy.refs import validate_repo_url
from shipyard.errors import InvalidInput, NotFound, ShipyardError
from shipyard.services.credentials import CredentialSpec, Kind, describe_ssh_key
from shipyard.services.projects import ProjectSpec
from shipyard.services.servers import ServerSpec
from shipyard.services.targets import TargetSpec
from shipyard.services.types import Name

M = TypeVar("M", bound=BaseModel)
TOP_LEVEL = ("space", "create_space", "environments", "credentials", "servers", "projects")
SECRET_SOURCES = ("secret", "secret_env", "secret_file", "private_key_file")
POSITION_STEP = 10
# Service errors that name a field differently from the API's input field.
FIELD_ALIASES = {"releases_dir": "releases"}


class CredentialEntry(BaseModel):
    """A credential in the file: its kind and where to read its secret from."""

    model_config = ConfigDict(extra="forbid")

    type: Kind
    username: str | None = None
    secret: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    private_key_file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CredentialEntry:
        given = [s for s in SECRET_SOURCES if getattr(self, s) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of " + ", ".join(SECRET_SOURCES))
        return self

    def read_secret(self, base: Path, where: str) -> str:
        if self.secret is not None:
            return self.secret
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if not value:
                raise InvalidInput(f"{where}.secret_env: environment variable "
                                   f"{self.secret_env} is not set")
            return value
        key = "secret_file" if self.secret_file is not None else "private_key_file"
        file = base / Path(str(getattr(self, key))).expanduser()
        try:
            return file.read_text()
        except OSError as exc:
            raise InvalidInput(f"{where}.{key}: cannot read {file}: {exc.strerror}") from exc


@dataclass
class Desired:
    """The validated file. Each spec keeps the path it came from, for later messages."""

    space: str
    create_space: bool = False
    environments: list[str] = field(default_factory=list)
    credentials: dict[str, CredentialEntry] = field(default_factory=dict)
    servers: list[tuple[str, ServerSpec]] = field(default_factory=list)
    projects: list[tuple[str, ProjectSpec, list[tuple[str, TargetSpec]]]] = \
        field(default_factory=list)


@dataclass
class Current:
    """What the space holds now, by name, as the API returns it."""

    space_exists: bool = False
    environments: dict[str, Any] = field(default_factory=dict)
    credentials: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, Any] = field(default_factory=dict)
    projects: dict[str, Any] = field(default_factory=dict)
    targets: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass
class Change:
    kind: str
    name: str
    action: str  # created | updated | unchanged
    fields: list[str] = field(default_factory=list)
    request: tuple[str, str, Any] | None = None  # method, route, body

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "action": self.action,
                "fields": self.fields}


class Problems:
    """Every problem found, each with its path, raised together as one InvalidInput."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}" if where else message)

    def raise_any(self) -> None:
        if len(self.lines) == 1:
            raise InvalidInput(f"{self.source}: {self.lines[0]}")
        if self.lines:
            raise InvalidInput(f"{self.source}: {len(self.lines)} problems", errors=self.lines)


# -- reading and validating -----------------------------------------------------------------


def apply_file(api: ApiClient, file: Path, *, dry_run: bool = False,
               update_secrets: bool = False) -> dict[str, Any]:
    """Validate ``file``, compare it with the server, write the differences (unless
    ``dry_run``) and return ``{space, dry_run, changes: [{kind, name, action, fields}]}``."""
    desired = read(file)
    current = fetch(api, desired)
    changes = plan(desired, current, base=file.parent, update_secrets=update_secrets)
    if not dry_run:
        execute(api, changes)
    return {"space": desired.space, "dry_run": dry_run,
            "changes": [c.as_dict() for c in changes]}


def read(file: Path) -> Desired:
    try:
        raw = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InvalidInput(f"{file}: not valid YAML: "
                           f"{getattr(exc, 'problem', None) or exc}{where}") from exc
    return parse(raw, str(file))


def parse(raw: Any, source: str = "file") -> Desired:
    """The file's content, validated; InvalidInput listing every problem by its path."""
    problems = Problems(source)
    if not isinstance(raw, dict):
        problems.add("", "must be a mapping with at least `space:`")
        problems.raise_any()
    for key in raw:
        if key not in TOP_LEVEL:
            problems.add(str(key), "unknown field (expected one of " + ", ".join(TOP_LEVEL)
                         + ")")
    desired = Desired(space=_name(raw.get("space"), "space", problems) or "",
                      create_space=raw.get("create_space", False))
    if not isinstance(desired.create_space, bool):
        problems.add("create_space", "must be true or false")
    for i, env in enumerate(_list(raw, "environments", problems)):
        name = _name(env, f"environments[{i}]", problems)
        if name in desired.environments:
            problems.add(f"environments[{i}]", f"{name!r} is listed twice")
        elif name:
            desired.environments.append(name)
    credentials = raw.get("credentials") or {}
    if not isinstance(credentials, dict):
        problems.add("credentials", "must be a mapping of name: {type: ..., ...}")
        credentials = {}
    for key, entry in credentials.items():
        where = f"credentials.{key}"
        name = _name(key, where, problems)
        parsed = validate_at(CredentialEntry, entry, where, problems)
        if name and parsed:
            desired.credentials[name] = parsed
    for i, data in enumerate(_list(raw, "servers", problems)):
        server = validate_at(ServerSpec, data, f"servers[{i}]", problems)
        if server and _unique(server.name, [s.name for _, s in desired.servers],
                              f"servers[{i}].name", problems):
            desired.servers.append((f"servers[{i}]", server))
    for i, data in enumerate(_list(raw, "projects", problems)):
        _parse_project(data, f"projects[{i}]", desired, problems)
    problems.raise_any()
    return desired


def _parse_project(data: Any, where: str, desired: Desired, problems: Problems) -> None:
    if isinstance(data, dict):
        data = dict(data)
        raw_targets = data.pop("targets", None) or []
    else:
        raw_targets = []
    project = validate_at(ProjectSpec, data, where, problems)
    repo = data.get("repo") if isinstance(data, dict) else None
    if isinstance(repo, str):
        # The syntax only: whether local paths are allowed is the server's setting.
        try:
            validate_repo_url(repo, allow_local=True)
        except InvalidInput as exc:
            problems.add(f"{where}.repo", _without_field(exc.message, "repo"))
            project = None
    if not isinstance(raw_targets, list):
        problems.add(f"{where}.targets", "must be a list")
        raw_targets = []
    targets: list[tuple[str, TargetSpec]] = []
    for j, item in enumerate(raw_targets):
        target = validate_at(TargetSpec, item, f"{where}.targets[{j}]", problems)
        if target and _unique(target.environment, [t.environment for _, t in targets],
                              f"{where}.targets[{j}].environment", problems):
            targets.append((f"{where}.targets[{j}]", target))
    if project and _unique(project.name, [p.name for _, p, _ in desired.projects],
                           f"{where}.name", problems):
        desired.projects.append((where, project, targets))


def _list(raw: dict[str, Any], key: str, problems: Problems) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        problems.add(key, "must be a list")
        return []
    return value


def _name(value: Any, where: str, problems: Problems) -> str | None:
    if value is None:
        problems.add(where, "required")
        return None
    try:
        return TypeAdapter(Name).validate_python(value)
    except InvalidInput as exc:
        problems.add(where, _without_field(exc.message, exc.field))
    except ValidationError:
        problems.add(where, f"must be a name, not {value!r}")
    return None


def _unique(name: str, seen: list[str], where: str, problems: Problems) -> bool:
    if name in seen:
        problems.add(where, f"{name!r} is defined twice")
        return False
    return True


def validate_at(model: type[M], data: Any, where: str, problems: Problems) -> M | None:
    """``model`` validated from ``data``, or None with every problem added under
    ``where``. Fields are checked one by one first: the services' validators raise
    InvalidInput, which stops a whole-model validation at the first error and knows only
    the leaf field's name, not its path. The whole model (cross-field rules, required
    fields) is then checked without the fields already found bad."""
    if not isinstance(data, dict):
        problems.add(where, "must be a mapping")
        return None
    before = len(problems.lines)
    _unknown_fields(model, data, where, problems)
    bad = set()
    for name, info in model.model_fields.items():
        if name not in data:
            continue
        value, annotation = data[name], info.annotation
        if not info.metadata and get_origin(annotation) is list and isinstance(value, list):
            item = TypeAdapter(get_args(annotation)[0])
            results = [_check(item, v, f"{where}.{name}[{i}]", problems)
                       for i, v in enumerate(value)]
            ok = all(results)
        else:
            adapter: TypeAdapter[Any] = TypeAdapter(
                cast(Any, Annotated[annotation, *info.metadata]) if info.metadata
                else cast(Any, annotation))
            ok = _check(adapter, value, f"{where}.{name}", problems,
                        nested=isinstance(annotation, type) and issubclass(annotation, BaseModel))
        if not ok:
            bad.add(name)
    try:
        validated = model.model_validate({k: v for k, v in data.items() if k not in bad})
    except InvalidInput as exc:
        leaf = FIELD_ALIASES.get(exc.field or "", exc.field)
        if leaf not in bad:
            problems.add(f"{where}.{leaf}" if leaf else where,
                         _without_field(exc.message, exc.field))
        return None
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (e["loc"] and e["loc"][0] in bad)]
        _add_pydantic(errors, where, problems)
        return None
    return validated if len(problems.lines) == before else None


def _check(adapter: TypeAdapter[Any], value: Any, where: str, problems: Problems, *,
           nested: bool = False) -> bool:
    try:
        adapter.validate_python(value)
    except InvalidInput as exc:
        # A nested model's error names its own field; a plain value's is the path itself.
        suffix = exc.field if nested and exc.field else None
        parent = where.rsplit(".", 1)[-1].split("[")[0]
        if exc.field and exc.field.startswith(parent + "."):  # e.g. variables.NAME
            suffix = exc.field.split(".", 1)[1]
        problems.add(f"{where}.{suffix}" if suffix else where,
                     _without_field(exc.message, exc.field, parent))
        return False
    except ValidationError as exc:
        _add_pydantic(exc.errors(), where, problems)
        return False
    return True


def _add_pydantic(errors: list[Any], where: str, problems: Problems) -> None:
    for error in errors:
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        leaf = next((str(p) for p in reversed(error["loc"]) if not isinstance(p, int)),
                    where.rsplit(".", 1)[-1].split("[")[0])
        message = _without_field(message, leaf)
        problems.add(f"{where}{loc}", message[:1].lower() + message[1:])


def _unknown_fields(model: type[BaseModel], data: dict[str, Any], where: str,
                    problems: Problems) -> None:
    """Typos are errors: the models ignore unknown keys, a config file must not."""
    for key, value in data.items():
        info = model.model_fields.get(str(key))
        if info is None:
            problems.add(f"{where}.{key}", "unknown field (expected one of "
                         + ", ".join(model.model_fields) + ")")
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel) \
                and isinstance(value, dict):
            _unknown_fields(info.annotation, value, f"{where}.{key}", problems)


def _without_field(message: str, *names: str | None) -> str:
    """'webroot must be an absolute path' -> 'must be an absolute path' (the path says
    which field)."""
    for name in names:
        for part in (name or "").split("."):
            for sep in (": ", " "):
                if part and message.startswith(part + sep):
                    return message[len(part) + len(sep):]
    return message


# -- the current state, the plan, the writes ------------------------------------------------


def fetch(api: ApiClient, desired: Desired) -> Current:
    """The space's current state (empty if the space does not exist yet)."""
    space = desired.space
    current = Current()
    try:
        api.get(path("/spaces/{}", space))
    except NotFound:
        return current
    current.space_exists = True
    current.environments = _by_name(api.get(path("/spaces/{}/environments", space)))
    current.credentials = _by_name(api.get(path("/spaces/{}/credentials", space)))
    current.servers = _by_name(api.get_all(path("/spaces/{}/servers", space)))
    current.projects = _by_name(api.get(path("/spaces/{}/projects", space)))
    for _, project, _ in desired.projects:
        if project.name in current.projects:
            for target in api.get(path("/spaces/{}/projects/{}/targets", space,
                                       project.name)):
                current.targets[project.name, target["environment"]] = target
    return current


def _by_name(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item for item in items}


def plan(desired: Desired, current: Current, *, base: Path,
         update_secrets: bool = False) -> list[Change]:
    """The changes that make ``current`` match ``desired``, in the order they must be
    made; InvalidInput (every problem, by path) if a reference cannot resolve."""
    problems = Problems("cannot apply")
    space = desired.space
    changes: list[Change] = []
    if not current.space_exists:
        if not desired.create_space:
            raise NotFound(f"no space named {space!r} (or you are not a member): create it "
                           f"with `shipyard spaces create {space}`, or add "
                           "`create_space: true` to the file")
        changes.append(Change("space", space, "created", [], ("POST", "/spaces",
                                                              {"name": space})))
    for i, name in enumerate(desired.environments):
        changes.append(_compare("environment", name, {"name": name,
                                                      "position": i * POSITION_STEP},
                                current.environments.get(name), None,
                                path("/spaces/{}/environments", space)))
    for name, entry in desired.credentials.items():
        change = _plan_credential(space, name, entry, current.credentials.get(name), base,
                                  update_secrets, problems)
        if change:
            changes.append(change)

    credentials = set(desired.credentials) | set(current.credentials)
    servers = {s.name for _, s in desired.servers} | set(current.servers)
    environments = set(desired.environments) | set(current.environments)
    for where, server in desired.servers:
        _require(server.credential, credentials, f"{where}.credential", "credential", problems)
        changes.append(_compare("server", server.name, server, current.servers.get(server.name),
                                ServerSpec, path("/spaces/{}/servers", space)))
    for where, project, targets in desired.projects:
        _require(project.credential, credentials, f"{where}.credential", "credential",
                 problems)
        changes.append(_compare("project", project.name, project,
                                current.projects.get(project.name), ProjectSpec,
                                path("/spaces/{}/projects", space)))
        for target_where, target in targets:
            _require(target.environment, environments, f"{target_where}.environment",
                     "environment", problems)
            for i, server_name in enumerate(target.servers):
                _require(server_name, servers, f"{target_where}.servers[{i}]", "server",
                         problems)
            changes.append(_compare(
                "target", f"{project.name}/{target.environment}", target,
                current.targets.get((project.name, target.environment)), TargetSpec,
                path("/spaces/{}/projects/{}/targets", space, project.name),
                key=target.environment, unordered=("servers",)))
    problems.raise_any()
    return changes


def _require(name: str | None, known: set[str], where: str, kind: str,
             problems: Problems) -> None:
    if name is not None and name not in known:
        problems.add(where, f"no {kind} named {name!r} in the file or the space")


def _compare(kind: str, name: str, desired: BaseModel | dict[str, Any], current: Any,
             model: type[BaseModel] | None, collection: str, *, key: str | None = None,
             unordered: tuple[str, ...] = ()) -> Change:
    want = desired.model_dump(mode="json") if isinstance(desired, BaseModel) else desired
    if current is None:
        return Change(kind, name, "created", [], ("POST", collection, want))
    have = _normalised(model, current) if model else current
    changed = [f for f in want if _comparable(f, want[f], unordered)
               != _comparable(f, have.get(f), unordered)]
    if not changed:
        return Change(kind, name, "unchanged")
    route = f"{collection}/{path('{}', key or name)}"
    return Change(kind, name, "updated", changed,
                  ("PATCH", route, {f: want[f] for f in changed}))


def _normalised(model: type[BaseModel], current: dict[str, Any]) -> dict[str, Any]:
    """The server's object through the same model as the file's: defaults and units
    alike. An object the model refuses compares unequal in every field."""
    try:
        return model.model_validate({k: v for k, v in current.items()
                                     if k in model.model_fields}).model_dump(mode="json")
    except (ValidationError, ShipyardError):
        return {}


def _comparable(name: str, value: Any, unordered: tuple[str, ...]) -> Any:
    return sorted(set(value)) if name in unordered and isinstance(value, list) else value


def _plan_credential(space: str, name: str, entry: CredentialEntry, current: Any,
                     base: Path, update_secrets: bool, problems: Problems) -> Change | None:
    where = f"credentials.{name}"
    kind = entry.type
    if current is not None and current["kind"] != kind:
        problems.add(f"{where}.type", f"the space has it as a {current['kind']} credential; "
                                      "the kind cannot change (delete it first)")
        return None
    needs_secret = current is None or kind == "ssh_key" or update_secrets
    secret = ""
    if needs_secret:
        try:
            secret = entry.read_secret(base, where)
        except InvalidInput as exc:
            problems.add("", exc.message)
            return None
    # The secret is not always needed (see needs_secret); the other fields always are.
    spec = validate_at(CredentialSpec, {"name": name, "kind": kind, "username": entry.username,
                                        "secret": secret or "(not read)"}, where, problems)
    if spec is None:
        return None
    fingerprint = ""
    if kind == "ssh_key":
        try:
            _, fingerprint = describe_ssh_key(secret if secret.endswith("\n") else secret + "\n")
        except InvalidInput:
            source = next(s for s in SECRET_SOURCES if getattr(entry, s) is not None)
            problems.add(f"{where}.{source}", "not an unencrypted SSH private key (OpenSSH "
                                              "or PEM format)")
            return None
    collection = path("/spaces/{}/credentials", space)
    if current is None:
        return Change("credential", name, "created", [], ("POST", collection,
                                                          spec.model_dump(mode="json")))
    body: dict[str, Any] = {}
    if (current.get("username") or None) != (entry.username or None):
        body["username"] = entry.username
    if (kind == "ssh_key" and current.get("fingerprint") != fingerprint) or \
            (kind != "ssh_key" and update_secrets):
        body["secret"] = secret
    if not body:
        return Change("credential", name, "unchanged")
    return Change("credential", name, "updated", list(body),
                  ("PATCH", f"{collection}/{path('{}', name)}", body))


def execute(api: ApiClient, changes: list[Change]) -> None:
    """Make the planned requests in order. A failure says what was already done."""
    done = 0
    for change in changes:
        if change.request is None:
            continue
        method, route, body = change.request
        try:
            api.request(method, route, json=body)
        except ShipyardError as exc:
            exc.message = (f"{change.kind} {change.name}: {exc.message} ({done} earlier "
                           "changes were applied; fix the file and apply again)")
            raise
        done += 1
