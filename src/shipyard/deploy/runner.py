"""The deploy engine: build once, then release to every chosen host in parallel.

Per batch, in two phases so that no host is switched when the batch is going to fail:

    A  connect -> transfer (rsync --link-dest to the live release) -> prev_release
    B  switch (temp symlink + mv -T) -> post_release -> prune

With ``on_failure: stop`` (the default) a failure in phase A stops the deploy before any
host of that batch is switched; with ``continue`` the hosts that passed are switched.
One SSH connection per host serves every step. A rollback skips the build and the
transfer: it switches to a kept release and runs the release hooks.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import update

from shipyard.deploy import release as remote
from shipyard.deploy.build import BuildCache, BuildSpec
from shipyard.deploy.connect import host_target, open_host
from shipyard.deploy.logsink import LogSink
from shipyard.deploy.plan import (
    DEFAULT_TRANSFER_TIMEOUT,
    HostTarget,
    Rollout,
    batches,
    hook_variables,
    ref_kind,
)
from shipyard.deploy.steps import StepRecorder
from shipyard.deploy.transport import SSHConnection
from shipyard.errors import DeployError, RemoteError, ShipyardError
from shipyard.models import (
    DeployTask,
    Environment,
    HostRelease,
    Project,
    Stage,
    StepStatus,
    Target,
    TaskKind,
    User,
)
from shipyard.models.types import utcnow
from shipyard.services.context import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

DEPLOY_STAGES = (
    Stage.CONNECT,
    Stage.TRANSFER,
    Stage.PREV_RELEASE,
    Stage.SWITCH,
    Stage.POST_RELEASE,
    Stage.PRUNE,
)
ROLLBACK_STAGES = (Stage.CONNECT, Stage.PREV_RELEASE, Stage.SWITCH, Stage.POST_RELEASE)


class Cancelled(Exception):
    """The task was cancelled while running."""


@dataclass
class DeployJob:
    """Everything a run needs, read from the database once, as plain data."""

    task_id: int
    kind: TaskKind
    title: str
    ref: str
    commit: str
    release_id: str
    rollback_to: str | None
    project_id: int
    project_name: str
    repo_url: str
    build: BuildSpec
    target_id: int
    webroot: str
    releases_dir: str
    keep: int
    release_hooks: dict[str, str]
    rollout: Rollout
    env_name: str
    deploy_user: str
    variables: dict[str, str]
    hosts: list[HostTarget]

    @property
    def stages(self) -> tuple[Stage, ...]:
        return ROLLBACK_STAGES if self.kind is TaskKind.ROLLBACK else DEPLOY_STAGES


@dataclass
class Outcome:
    succeeded: bool
    cancelled: bool = False
    error: str | None = None
    failed_hosts: list[str] = field(default_factory=list)


def load_job(runtime: Runtime, task_id: int, now: datetime) -> DeployJob:
    from shipyard.services.tasks import target_servers

    with runtime.sessions() as db:
        task = db.get_one(DeployTask, task_id)
        project = db.get_one(Project, task.project_id)
        target = db.get_one(Target, task.target_id)
        env = db.get_one(Environment, target.environment_id)
        user = db.get(User, task.started_by_id or task.submitted_by_id)
        from shipyard.services.context import Context

        servers = target_servers(Context(db=db, runtime=runtime), task)
        hosts = [host_target(runtime.vault, server) for server in servers]
        return DeployJob(
            task_id=task.id,
            kind=task.kind,
            title=task.title,
            ref=task.ref,
            commit=task.commit_sha or "",
            release_id=task.release or remote.make_release_id(task.id, now),
            rollback_to=task.rollback_to,
            project_id=project.id,
            project_name=project.name,
            repo_url=project.repo_url,
            build=BuildSpec(
                project_name=project.name,
                sha=task.commit_sha or "",
                prev_deploy=(project.hooks or {}).get("prev_deploy"),
                post_deploy=(project.hooks or {}).get("post_deploy"),
                excludes=list(project.excludes or []),
                includes=list(project.includes or []),
                variables=dict(project.variables or {}),
            ),
            target_id=target.id,
            webroot=target.webroot,
            releases_dir=target.releases_dir,
            keep=target.keep,
            release_hooks=dict(target.hooks or {}),
            rollout=Rollout.from_strategy(dict(target.strategy or {})),
            env_name=env.name,
            deploy_user=user.username if user else "",
            variables=dict(project.variables or {}),
            hosts=hosts,
        )


class Runner:
    """Runs one job. ``cancelled`` is set from outside (the heartbeat sees the request)."""

    def __init__(
        self, runtime: Runtime, job: DeployJob, sink: LogSink, cancelled: threading.Event
    ) -> None:
        self.runtime = runtime
        self.job = job
        self.sink = sink
        self.cancelled = cancelled
        self.steps = StepRecorder(runtime.sessions, job.task_id)
        self.builtins: dict[str, str] = {}
        self.artifact: Path | None = None

    # -- the whole run ---------------------------------------------------------------------

    def run(self) -> Outcome:
        job = self.job
        self.sink.system(
            f"{job.kind.value} #{job.task_id} of {job.project_name} "
            f"{job.commit[:12]} to {job.env_name}: {len(job.hosts)} host(s), "
            f"release {job.release_id}"
        )
        rows: list[tuple[int | None, str, str]] = []
        if job.kind is TaskKind.DEPLOY:
            rows.append((None, "", Stage.BUILD.value))
        rows += [(h.server_id, h.name, s.value) for h in job.hosts for s in job.stages]
        self.steps.plan(rows)
        try:
            if job.kind is TaskKind.DEPLOY:
                self._build()
            outcome = asyncio.run(self._release_all())
        except Cancelled:
            outcome = Outcome(False, cancelled=True, error="cancelled")
        except ShipyardError as exc:
            outcome = Outcome(False, error=exc.message)
        status = StepStatus.CANCELLED if outcome.cancelled else StepStatus.SKIPPED
        self.steps.skip_pending(status)
        self.sink.system(
            "succeeded"
            if outcome.succeeded
            else f"{'cancelled' if outcome.cancelled else 'failed'}: {outcome.error}"
        )
        return outcome

    # -- build -----------------------------------------------------------------------------

    def _build(self) -> None:
        from shipyard.services import repos
        from shipyard.services.context import Context

        job = self.job
        self.steps.start("", Stage.BUILD)
        started = time.monotonic()

        def on_line(stream: str, line: str) -> None:
            if self.cancelled.is_set():
                raise Cancelled()
            self.sink.emit("", Stage.BUILD, stream, line)

        try:
            with self.runtime.sessions() as db:
                project = db.get_one(Project, job.project_id)
                ctx = Context(db=db, runtime=self.runtime)
                with repos.mirror(ctx, project) as mirror:
                    self.sink.system("fetching the repository", stage=Stage.BUILD)
                    mirror.fetch()
                    kinds = ref_kind(
                        job.ref,
                        {b.name for b in mirror.branches()},
                        {t.name for t in mirror.tags()},
                    )
                    self.builtins = self._builtin_vars(kinds)
                    cache = BuildCache(self.runtime.settings.home / "builds")
                    result = cache.build(
                        job.build,
                        mirror,
                        task_vars=self.builtins,
                        on_line=on_line,
                        on_hook=lambda name: self.sink.system(f"running {name}", stage=Stage.BUILD),
                    )
        except Cancelled:
            self.steps.finish(
                "", Stage.BUILD, StepStatus.CANCELLED, duration=time.monotonic() - started
            )
            raise
        except ShipyardError as exc:
            self.steps.finish(
                "",
                Stage.BUILD,
                StepStatus.FAILED,
                exit_code=exc.details.get("exit_code"),
                duration=time.monotonic() - started,
                output_tail=str(exc.details.get("output") or exc.message),
            )
            raise
        self.artifact = result.path
        self.sink.system(
            "reusing the build of this commit"
            if result.cached
            else f"built in {result.duration:.1f}s",
            stage=Stage.BUILD,
        )
        self.steps.finish(
            "", Stage.BUILD, StepStatus.SUCCEEDED, exit_code=0, duration=time.monotonic() - started
        )

    def _builtin_vars(self, kinds: dict[str, str]) -> dict[str, str]:
        job = self.job
        # A rollback's hooks act on the release switched to, as its RELEASE_DIR does.
        release = job.rollback_to if job.kind is TaskKind.ROLLBACK else None
        return {
            "COMMIT_ID": job.commit,
            "TASK_ID": str(job.task_id),
            "TASK_NAME": job.title,
            "PROJECT_NAME": job.project_name,
            "ENV_NAME": job.env_name,
            "DEPLOY_USER": job.deploy_user,
            "RELEASE": release or job.release_id,
            **kinds,
        }

    # -- release ---------------------------------------------------------------------------

    async def _release_all(self) -> Outcome:
        job = self.job
        if not self.builtins:
            self.builtins = self._builtin_vars({"BRANCH": "", "TAG": ""})
        limit = asyncio.Semaphore(job.rollout.parallel)
        conns: dict[str, SSHConnection] = {}
        failed: dict[str, str] = {}
        watcher = asyncio.create_task(self._watch_cancel())
        try:
            groups = batches(job.hosts, job.rollout.batch)
            for number, group in enumerate(groups, 1):
                if len(groups) > 1:
                    self.sink.system(
                        f"batch {number}/{len(groups)}: " + ", ".join(h.name for h in group)
                    )
                ready = await self._phase(
                    group, limit, failed, lambda h: self._prepare_host(h, conns)
                )
                if failed and job.rollout.stop_on_failure:
                    break
                await self._phase(
                    ready, limit, failed, lambda h: self._activate_host(h, conns[h.name])
                )
                if failed and job.rollout.stop_on_failure:
                    break
                if number < len(groups) and job.rollout.pause:
                    self.sink.system(f"pausing {job.rollout.pause:g}s before the next batch")
                    await asyncio.sleep(job.rollout.pause)
        except asyncio.CancelledError:
            raise Cancelled() from None
        finally:
            watcher.cancel()
            await asyncio.gather(*(c.close() for c in conns.values()), return_exceptions=True)
        if self.cancelled.is_set():
            raise Cancelled()
        if failed:
            names = sorted(failed)
            detail = "; ".join(f"{n} {failed[n]}" for n in names[:5])
            return Outcome(
                False,
                error=f"{len(names)} of {len(job.hosts)} host(s) failed: {detail}",
                failed_hosts=names,
            )
        return Outcome(True)

    async def _watch_cancel(self) -> None:
        while not self.cancelled.is_set():
            await asyncio.sleep(0.2)
        main = asyncio.current_task()
        for task in asyncio.all_tasks():
            if task is not main and not task.done():
                task.cancel()

    async def _phase(
        self,
        hosts: list[HostTarget],
        limit: asyncio.Semaphore,
        failed: dict[str, str],
        step: Callable[[HostTarget], Awaitable[None]],
    ) -> list[HostTarget]:
        """Run ``step`` on each host (at most ``limit`` at once); return those that passed."""

        async def one(host: HostTarget) -> bool:
            async with limit:
                try:
                    await step(host)
                    return True
                except ShipyardError as exc:
                    stage = str(exc.details.get("stage") or "task")
                    # The task's error names host and stage: "host2 at connect: ...".
                    failed[host.name] = f"at {stage}: {exc.message}"
                    self.sink.emit(host.name, stage, "system", f"failed: {exc.message}")
                    return False

        results = await asyncio.gather(*(one(h) for h in hosts))
        return [h for h, ok in zip(hosts, results, strict=True) if ok]

    async def _stage(
        self,
        host: HostTarget,
        stage: Stage,
        work: Callable[[], Awaitable[T]],
    ) -> T:
        """Run one stage on one host, recording status, duration and output tail."""
        await asyncio.to_thread(self.steps.start, host.name, stage)
        started = time.monotonic()
        try:
            result = await work()
        except ShipyardError as exc:
            exc.details.setdefault("stage", stage.value)
            await asyncio.to_thread(
                self.steps.finish,
                host.name,
                stage,
                StepStatus.FAILED,
                exit_code=exc.details.get("exit_code"),
                duration=time.monotonic() - started,
                output_tail=str(exc.details.get("output") or exc.message),
            )
            raise
        except asyncio.CancelledError:
            await asyncio.to_thread(
                self.steps.finish,
                host.name,
                stage,
                StepStatus.CANCELLED,
                duration=time.monotonic() - started,
            )
            raise
        await asyncio.to_thread(
            self.steps.finish,
            host.name,
            stage,
            StepStatus.SUCCEEDED,
            exit_code=0,
            duration=time.monotonic() - started,
        )
        return result

    def _on_line(self, host: str, stage: Stage) -> Callable[[str, str], None]:
        return lambda stream, line: self.sink.emit(host, stage, stream, line)

    def _host_vars(self, host: HostTarget, release_dir: str) -> dict[str, str]:
        return hook_variables(
            self.job.variables,
            {
                **self.builtins,
                "RELEASE_DIR": release_dir,
                "WEBROOT": self.job.webroot,
                "SERVER": host.name,
                "WORKSPACE": release_dir,
            },
        )

    async def _hook(
        self, conn: SSHConnection, host: HostTarget, stage: Stage, release_dir: str
    ) -> None:
        script = self.job.release_hooks.get(stage.value)
        if not script:
            return
        await conn.run(
            ["sh", "-c", script],
            env=self._host_vars(host, release_dir),
            cwd=release_dir,
            timeout=self.job.rollout.command_timeout,
            on_line=self._on_line(host.name, stage),
            stage=stage.value,
        )

    # -- phase A: connect, transfer, prev_release ------------------------------------------

    async def _prepare_host(self, host: HostTarget, conns: dict[str, SSHConnection]) -> None:
        job = self.job
        conn = await self._stage(host, Stage.CONNECT, lambda: self._connect(host))
        conns[host.name] = conn
        if job.kind is TaskKind.ROLLBACK:
            release_dir = await self._stage(
                host, Stage.PREV_RELEASE, lambda: self._rollback_prepare(conn, host)
            )
            return
        release_dir = remote.release_path(job.releases_dir, job.release_id)

        async def transfer() -> None:
            live = await remote.current_release(conn, job.webroot)
            link_dest = live if live and live != release_dir else None
            await remote.prepare_release_dir(conn, job.releases_dir, job.release_id)
            assert self.artifact is not None
            await conn.push_dir(
                self.artifact,
                release_dir,
                link_dest=link_dest,
                timeout=DEFAULT_TRANSFER_TIMEOUT,
                on_line=self._on_line(host.name, Stage.TRANSFER),
            )
            await asyncio.to_thread(self._record_release, host)

        await self._stage(host, Stage.TRANSFER, transfer)
        await self._stage(
            host,
            Stage.PREV_RELEASE,
            lambda: self._hook(conn, host, Stage.PREV_RELEASE, release_dir),
        )

    async def _rollback_prepare(self, conn: SSHConnection, host: HostTarget) -> str:
        job = self.job
        assert job.rollback_to is not None
        release_dir = remote.release_path(job.releases_dir, job.rollback_to)
        kept = await remote.list_releases(conn, job.releases_dir, job.webroot)
        if not any(r.id == job.rollback_to for r in kept):
            raise DeployError(
                f"release {job.rollback_to} is not on {host.name} (kept: "
                + (", ".join(r.id for r in kept[:5]) or "none")
                + ")",
                stage="prev_release",
            )
        await self._hook(conn, host, Stage.PREV_RELEASE, release_dir)
        return release_dir

    async def _connect(self, host: HostTarget) -> SSHConnection:
        """One verified connection per host, all hosts at once (within the rollout's
        ``parallel``). When the build host is saturated, a handshake can outlast its
        timeout; it is tried once more rather than failing the host. (Capping handshakes
        in flight was measured: it serialises connects and costs more than it saves.)"""
        for attempt in (1, 2):
            try:
                return await open_host(
                    self.runtime.sessions,
                    host,
                    note=lambda line: self.sink.emit(host.name, Stage.CONNECT, "system",
                                                     line),
                )
            except RemoteError as exc:
                if attempt == 2 or exc.details.get("reason") != "timeout":
                    raise
                self.sink.emit(host.name, Stage.CONNECT, "system",
                               f"{exc.message}; trying once more")
        raise AssertionError("unreachable")

    def _record_release(self, host: HostTarget) -> None:
        job = self.job
        with self.runtime.sessions() as db, db.begin():
            db.add(
                HostRelease(
                    target_id=job.target_id,
                    server_id=host.server_id,
                    release=job.release_id,
                    task_id=job.task_id,
                    commit_sha=job.commit,
                )
            )

    # -- phase B: switch, post_release, prune ----------------------------------------------

    async def _activate_host(self, host: HostTarget, conn: SSHConnection) -> None:
        job = self.job
        release_id = job.rollback_to if job.kind is TaskKind.ROLLBACK else job.release_id
        assert release_id is not None
        release_dir = remote.release_path(job.releases_dir, release_id)
        previous: list[str | None] = [None]

        async def switch() -> None:
            previous[0] = await remote.switch_symlink(conn, job.webroot, release_dir)
            self.sink.emit(
                host.name,
                Stage.SWITCH,
                "system",
                f"{job.webroot} -> {release_dir}"
                + (f" (was {previous[0]})" if previous[0] else ""),
            )

        await self._stage(host, Stage.SWITCH, switch)
        await self._stage(
            host,
            Stage.POST_RELEASE,
            lambda: self._hook(conn, host, Stage.POST_RELEASE, release_dir),
        )
        if job.kind is TaskKind.DEPLOY:
            prev_id = posixpath.basename(previous[0]) if previous[0] else None

            async def prune() -> None:
                gone = await remote.prune_releases(
                    conn, job.releases_dir, job.keep, release_id, prev_id, webroot=job.webroot
                )
                if gone:
                    self.sink.emit(host.name, Stage.PRUNE, "system", "removed " + ", ".join(gone))
                    await asyncio.to_thread(self._record_pruned, host, gone)

            await self._stage(host, Stage.PRUNE, prune)

    def _record_pruned(self, host: HostTarget, gone: list[str]) -> None:
        with self.runtime.sessions() as db, db.begin():
            db.execute(
                update(HostRelease)
                .where(
                    HostRelease.target_id == self.job.target_id,
                    HostRelease.server_id == host.server_id,
                    HostRelease.release.in_(gone),
                )
                .values(pruned_at=utcnow())
            )
