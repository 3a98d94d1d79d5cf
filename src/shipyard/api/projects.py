"""Projects, their targets, project-level members, and their git refs."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from shipyard.api.deps import guard
from shipyard.api.partial import changes, partial
from shipyard.api.schemas import CommitOut, MemberOut, ProjectOut, RefOut, TargetOut
from shipyard.services import projects, repos, spaces, targets
from shipyard.services.projects import ProjectSpec
from shipyard.services.spaces import MemberSpec
from shipyard.services.targets import TargetSpec

router = APIRouter(prefix="/spaces/{space}/projects")
ProjectPatch = partial(ProjectSpec)
TargetPatch = partial(TargetSpec)


@router.get("", response_model=list[ProjectOut], tags=["projects"])
def list_projects(space: str, call: guard("project.read")) -> list[ProjectOut]:
    return [ProjectOut.of(p) for p in projects.list_projects(call.ctx, call.in_space)]


@router.post("", response_model=ProjectOut, status_code=201, tags=["projects"])
def create_project(space: str, body: ProjectSpec, call: guard("project.create")) -> ProjectOut:
    return ProjectOut.of(projects.create_project(call.ctx, call.in_space, body))


@router.get("/{project}", response_model=ProjectOut, tags=["projects"])
def get_project(space: str, project: str, call: guard("project.read")) -> ProjectOut:
    return ProjectOut.of(call.in_project)


@router.patch("/{project}", response_model=ProjectOut, tags=["projects"])
def update_project(space: str, project: str, body: ProjectPatch,  # type: ignore[valid-type]
                   call: guard("project.manage")) -> ProjectOut:
    return ProjectOut.of(projects.update_project(call.ctx, call.in_space, project,
                                                 changes(body)))


@router.delete("/{project}", status_code=204, tags=["projects"])
def delete_project(space: str, project: str, call: guard("project.manage")) -> Response:
    projects.delete_project(call.ctx, call.in_space, project)
    return Response(status_code=204)


@router.get("/{project}/members", response_model=list[MemberOut], tags=["members"])
def list_project_members(space: str, project: str,
                         call: guard("project.read")) -> list[MemberOut]:
    return [MemberOut(username=u.username, display_name=u.display_name, role=m.role.label)
            for m, u in spaces.list_project_members(call.ctx, call.in_project)]


@router.put("/{project}/members/{username}", response_model=MemberOut, tags=["members"])
def set_project_member(space: str, project: str, username: str, body: MemberSpec,
                       call: guard("project.members")) -> MemberOut:
    """Give a space member a role on this project that overrides their space role."""
    member = spaces.set_project_member(call.ctx, call.in_project, username, body.parsed_role())
    return MemberOut(username=username, display_name="", role=member.role.label)


@router.delete("/{project}/members/{username}", status_code=204, tags=["members"])
def remove_project_member(space: str, project: str, username: str,
                          call: guard("project.members")) -> Response:
    spaces.remove_project_member(call.ctx, call.in_project, username)
    return Response(status_code=204)


@router.get("/{project}/branches", response_model=list[RefOut], tags=["git"])
def list_branches(space: str, project: str, call: guard("project.read"),
                  fetch: bool = True) -> list[RefOut]:
    """Branches of the project's repository (fetched first unless fetch=false)."""
    return [RefOut(name=r.name, sha=r.sha, date=r.date)
            for r in repos.branches(call.ctx, call.in_project, fetch=fetch)]


@router.get("/{project}/tags", response_model=list[RefOut], tags=["git"])
def list_tags(space: str, project: str, call: guard("project.read"),
              fetch: bool = True) -> list[RefOut]:
    return [RefOut(name=r.name, sha=r.sha, date=r.date)
            for r in repos.tags(call.ctx, call.in_project, fetch=fetch)]


@router.get("/{project}/commits", response_model=list[CommitOut], tags=["git"])
def list_commits(space: str, project: str, call: guard("project.read"),
                 ref: str | None = None, limit: int = Query(20, ge=1, le=200),
                 fetch: bool = True) -> list[CommitOut]:
    """Recent commits of a ref (default: the project's default branch)."""
    return [CommitOut(sha=c.sha, short_sha=c.short_sha, author=c.author, email=c.email,
                      date=c.date, message=c.message)
            for c in repos.commits(call.ctx, call.in_project, ref, limit=limit, fetch=fetch)]


@router.get("/{project}/targets", response_model=list[TargetOut], tags=["targets"])
def list_targets(space: str, project: str, call: guard("target.read")) -> list[TargetOut]:
    return [TargetOut.of(t) for t in targets.list_targets(call.ctx, call.in_project)]


@router.post("/{project}/targets", response_model=TargetOut, status_code=201,
             tags=["targets"])
def create_target(space: str, project: str, body: TargetSpec,
                  call: guard("target.manage")) -> TargetOut:
    return TargetOut.of(targets.create_target(call.ctx, call.in_space, call.in_project, body))


@router.get("/{project}/targets/{environment}", response_model=TargetOut, tags=["targets"])
def get_target(space: str, project: str, environment: str,
               call: guard("target.read")) -> TargetOut:
    return TargetOut.of(targets.get_target(call.ctx, call.in_project, environment))


@router.patch("/{project}/targets/{environment}", response_model=TargetOut, tags=["targets"])
def update_target(space: str, project: str, environment: str,
                  body: TargetPatch,  # type: ignore[valid-type]
                  call: guard("target.manage")) -> TargetOut:
    return TargetOut.of(targets.update_target(call.ctx, call.in_space, call.in_project,
                                              environment, changes(body)))


@router.delete("/{project}/targets/{environment}", status_code=204, tags=["targets"])
def delete_target(space: str, project: str, environment: str,
                  call: guard("target.manage")) -> Response:
    targets.delete_target(call.ctx, call.in_space, call.in_project, environment)
    return Response(status_code=204)
