"""Deploy benchmark: Shipyard against a hand-written rsync + ssh script, on the same hosts.

    .venv/bin/python bench/deploy_bench.py [--hosts 1,10,50] [--files 2000] [--mb 40]

Needs root (the sshd fleet of tests/fleet). See bench/README.md for what it measures and
how to read the table. Everything it starts (fleet, server, ssh) is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from baseline import Baseline  # noqa: E402
from shipyard_server import (  # noqa: E402
    Api,
    DeployFailed,
    DeployRun,
    ShipyardServer,
    parse_time,
    stage_times,
)
from tests.fleet.harness import Fleet, unavailable_reason  # noqa: E402
from workload import (  # noqa: E402
    Manifest,
    carry_mtimes,
    check_release,
    commit_one_change,
    export,
    git,
    make_repo,
    manifest,
)

SPACE = "bench"
PROJECT = "site"
RSS_BUDGET = 300 * 2**20
TARGETS = {"first": 1.1, "incremental": 0.8}  # Shipyard/baseline at TARGET_HOSTS hosts
TARGET_HOSTS = 50
SHOWN_STAGES = ("connect", "transfer", "switch", "prune")  # no hooks are configured
HOST_STAGES = ("connect", "transfer", "prev_release", "switch", "post_release", "prune")


@dataclass
class Case:
    hosts: int
    kind: str  # "first" or "incremental"
    shipyard: list[float] = field(default_factory=list)  # wall seconds of each run
    baseline: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # per round, when both succeeded
    shipyard_cpu: list[float] = field(default_factory=list)  # whole machine, CPU-seconds
    baseline_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # the server process alone
    busy: list[float] = field(default_factory=list)  # CPUs busy with others before a round
    runs: list[DeployRun] = field(default_factory=list)
    failed_runs: list[DeployRun] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")


class Bench:
    def __init__(
        self, args: argparse.Namespace, work: Path, fleet: Fleet, server: ShipyardServer, api: Api
    ) -> None:
        self.args = args
        self.work = work
        self.fleet = fleet
        self.server = server
        self.api = api
        self.repo = work / "repo"
        self.baseline = Baseline(fleet.hosts, work / "baseline", timeout=args.timeout)
        self.parallel = args.parallel or max(args.hosts)
        self.cold_builds: dict[str, float] = {}  # sha -> build stage seconds (excluded)
        self.sources: dict[str, Path] = {}  # sha -> git archive export (the baseline's src)
        self.manifests: dict[str, Manifest] = {}
        self.cases: list[Case] = []

    # -- setup through the REST API --------------------------------------------------------

    def setup(self, head: str) -> None:
        api, hosts = self.api, self.fleet.hosts
        api.post("/spaces", {"name": SPACE})
        base = f"/spaces/{SPACE}"
        for env in ["keys", "warm", *(f"n{n}" for n in self.args.hosts)]:
            api.post(f"{base}/environments", {"name": env})
        api.post(
            f"{base}/credentials",
            {"name": "fleet-key", "kind": "ssh_key", "secret": hosts[0].client_private_key},
        )
        for h in hosts:
            api.post(
                f"{base}/servers",
                {
                    "name": h.name,
                    "host": h.address,
                    "port": h.port,
                    "user": h.user,
                    "credential": "fleet-key",
                },
            )
        strategy = {"parallel": self.parallel}
        # A tiny project deployed once to every host records the host keys (first contact
        # does an ssh-keyscan): the baseline starts with a known_hosts file too.
        keys_repo = self.work / "keys-repo"
        keys_repo.mkdir()
        (keys_repo / "index.html").write_text("keys\n")
        git(keys_repo, "init", "-q", "-b", "main")
        git(keys_repo, "add", "-A")
        git(keys_repo, "commit", "-q", "-m", "keys")
        api.post(
            f"{base}/projects", {"name": "keys", "repo": str(keys_repo), "default_branch": "main"}
        )
        # (10 at a time: this is setup, and 50 first contacts at once can time out here)
        self._target("keys", "keys", [h.name for h in hosts], "/srv/bench/keys", {"parallel": 10})
        api.post(
            f"{base}/projects", {"name": PROJECT, "repo": str(self.repo), "default_branch": "main"}
        )
        self._target(PROJECT, "warm", [hosts[0].name], "/srv/bench/warm", strategy)
        for n in self.args.hosts:
            self._target(
                PROJECT, f"n{n}", [h.name for h in hosts[:n]], f"/srv/bench/shipyard-n{n}", strategy
            )
        for attempt in range(3):
            try:
                api.deploy(SPACE, "keys", "keys", "main", timeout=self.args.timeout)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self._remember(head)

    def _target(
        self, project: str, env: str, servers: list[str], root: str, strategy: dict[str, Any]
    ) -> None:
        self.api.post(
            f"/spaces/{SPACE}/projects/{project}/targets",
            {
                "environment": env,
                "servers": servers,
                "webroot": f"{root}/www",
                "releases": f"{root}/releases",
                "strategy": strategy,
            },
        )

    # -- the cases -----------------------------------------------------------------------

    def run(self, head: str) -> None:
        sha = head
        for n in self.args.hosts:
            hosts = self.fleet.hosts[:n]
            base_root = f"/srv/bench/baseline-n{n}"
            first = Case(n, "first")
            self.cases.append(first)
            prev_id = self._round(first, hosts, sha, base_root, None, 0)
            incremental = Case(n, "incremental")
            self.cases.append(incremental)
            for r in range(1, self.args.repeat + 1):
                new = commit_one_change(self.repo, f"n{n}-r{r}-{secrets.token_hex(4)}")
                self._remember(new, previous=sha)
                prev_id = self._round(incremental, hosts, new, base_root, prev_id, r)
                sha = new

    def _round(
        self,
        case: Case,
        hosts: list[Any],
        sha: str,
        base_root: str,
        prev_id: str | None,
        round_no: int,
    ) -> str | None:
        """Deploy ``sha`` with Shipyard and with the baseline (alternating which goes
        first); return the baseline's release id (``prev_id`` if the baseline failed)."""
        n = case.hosts
        self._warm_build(sha)
        case.busy.append(_busy_cpus())
        release_id = f"b{round_no:02d}-{sha[:8]}"
        walls: dict[str, float] = {}

        def shipyard() -> None:
            _settle()
            cpu0, srv0 = _machine_cpu(), _process_cpu(self._server_pid())
            try:
                with self._profile(f"n{n}-{case.kind}-{round_no}"):
                    run = self.api.deploy(SPACE, PROJECT, f"n{n}", sha, timeout=self.args.timeout)
            except DeployFailed as exc:  # keep its timings: where did it go wrong?
                exc.run.stages = stage_times(self.server.database, exc.run.task_id)
                case.failed_runs.append(exc.run)
                raise
            case.shipyard_cpu.append(_machine_cpu() - cpu0)
            case.server_cpu.append(_process_cpu(self._server_pid()) - srv0)
            run.stages = stage_times(self.server.database, run.task_id)
            self._verify(hosts, f"/srv/bench/shipyard-n{n}", run.release, sha)
            case.shipyard.append(run.wall)
            case.runs.append(run)
            walls["Shipyard"] = run.wall

        def baseline() -> None:
            _settle()
            cpu0 = _machine_cpu()
            wall = self.baseline.deploy(
                hosts,
                self.sources[sha],
                f"{base_root}/releases",
                f"{base_root}/www",
                release_id,
                prev_id,
                self.parallel,
            )
            case.baseline_cpu.append(_machine_cpu() - cpu0)
            self._verify(hosts, base_root, release_id, sha)
            case.baseline.append(wall)
            walls["baseline"] = wall

        order: list[Callable[[], None]] = [shipyard, baseline]
        if round_no % 2:
            order.reverse()
        for step in order:
            try:
                step()
            except Exception as exc:  # a failed or wrong deploy is a result, not a crash
                case.failures.append(f"{step.__name__}: {exc}")
                print(f"  {n:>3} host(s) {case.kind:<11} {step.__name__} FAILED: {exc}", flush=True)
        if len(walls) == 2:
            case.ratios.append(walls["Shipyard"] / walls["baseline"])
        shown = "   ".join(f"{k} {v:7.2f}s" for k, v in walls.items())
        print(
            f"  {n:>3} host(s) {case.kind:<11} {shown}   (others busy: {case.busy[-1]:.1f} CPU)",
            flush=True,
        )
        return release_id if "baseline" in walls else prev_id

    def _warm_build(self, sha: str) -> None:
        """Build ``sha`` outside the timed runs, by deploying it to the one-host ``warm``
        target; the timed deploys then find it in the build cache."""
        if sha in self.cold_builds:
            return
        run = self.api.deploy(SPACE, PROJECT, "warm", sha, timeout=self.args.timeout)
        build = stage_times(self.server.database, run.task_id).get("build")
        self.cold_builds[sha] = build.longest if build else float("nan")
        self._verify(self.fleet.hosts[:1], "/srv/bench/warm", run.release, sha)

    def _remember(self, sha: str, previous: str | None = None) -> None:
        """Export ``sha`` (the baseline's source, prepared before any timing)."""
        dest = self.work / "exports" / sha
        export(self.repo, sha, dest)
        if previous is not None:
            carry_mtimes(self.sources[previous], dest)
        self.sources[sha] = dest
        self.manifests[sha] = manifest(dest)

    def _verify(self, hosts: list[Any], root: str, release_id: str, sha: str) -> None:
        expected = self.manifests[sha]
        for i, host in enumerate(hosts):
            problem = check_release(
                host.host_dir,
                f"{root}/www",
                f"{root}/releases/{release_id}",
                expected,
                full=self.sources[sha] if i == 0 else None,
            )
            if problem:
                raise RuntimeError(f"WRONG result on {host.name}: {problem}")

    def _server_pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    @contextlib.contextmanager
    def _profile(self, name: str) -> Iterator[None]:
        """py-spy record of the server during the timed deploy, if --py-spy was given."""
        if not self.args.py_spy:
            yield
            return
        out_dir = Path(self.args.profile_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            self.args.py_spy,
            "record",
            "-p",
            str(self._server_pid()),
            "-r",
            "100",
            "--format",
            "raw",
            "-o",
            str(out_dir / f"{name}.txt"),
            "--threads",
            "--nonblocking",
            *(["--idle"] if self.args.profile_idle else []),
        ]
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(0.5)  # let it attach
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


# -- measuring -----------------------------------------------------------------------------


def _settle() -> None:
    """Flush the previous run's writes, so they do not slow the next one down."""
    os.sync()
    time.sleep(0.5)


def _busy_cpus(window: float = 1.0) -> float:
    """How many CPUs were busy during ``window`` seconds while the benchmark was idle:
    the load that other users of the machine add to every run."""
    os.sync()
    before = _machine_cpu()
    time.sleep(window)
    return (_machine_cpu() - before) / window


def _machine_cpu() -> float:
    """CPU-seconds the whole machine has spent busy (all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


# -- the report ----------------------------------------------------------------------------


def report(bench: Bench, peak_rss: int | None) -> None:
    args = bench.args
    print()
    print(
        f"Deploy benchmark: {args.files} files, {args.mb:g} MB (random bytes), "
        f"parallel {bench.parallel}, {os.cpu_count()} CPU(s); incremental = median of "
        f"{args.repeat} one-file commit(s)"
    )
    print(
        "Build cache: WARM for every timed Shipyard deploy (each commit was built first "
        "by a deploy to a separate one-host target); the baseline does not build."
    )
    print()
    head = (
        f"{'hosts':>5}  {'case':<12}{'Shipyard s':>11}{'baseline s':>11}{'ratio':>8}  "
        f"{'target':<14}{'busy':>6}{'CPU-s sy/base':>15}"
    )
    print(head)
    print("-" * len(head))
    for case in bench.cases:
        target = ""
        if case.hosts == TARGET_HOSTS:
            limit = TARGETS[case.kind]
            ok = bool(case.ratios) and case.ratio <= limit and not case.failures
            target = f"<={limit:.2f}x {'PASS' if ok else 'MISS'}"
        notes = []
        if len(case.shipyard) > 1 or len(case.baseline) > 1:
            notes.append(f"Shipyard {_span(case.shipyard)}, baseline {_span(case.baseline)}")
        if case.failures:
            notes.append(f"{len(case.failures)} FAILED: " + "; ".join(case.failures)[:300])
        cpu = f"{_median(case.shipyard_cpu):.1f}/{_median(case.baseline_cpu):.1f}"
        print(
            f"{case.hosts:>5}  {case.kind:<12}{_median(case.shipyard):>11.2f}"
            f"{_median(case.baseline):>11.2f}{case.ratio:>7.2f}x  {target:<14}"
            f"{_median(case.busy):>6.1f}{cpu:>15}" + (f"  ({'; '.join(notes)})" if notes else "")
        )
    print(
        "  ratio: median over rounds of Shipyard/baseline (each round runs both, "
        "alternating which goes first);\n  busy: CPUs kept busy by other processes in the "
        "second before the round (a shared machine);\n  CPU-s: busy CPU-seconds of the whole "
        "machine during the run (others' load included)."
    )
    print()
    if peak_rss is not None:
        verdict = "within" if peak_rss <= RSS_BUDGET else "OVER"
        print(
            f"Shipyard server peak RSS (VmHWM, the server process alone): "
            f"{peak_rss / 2**20:.0f} MB, {verdict} the {RSS_BUDGET // 2**20} MB budget"
        )
    builds = list(bench.cold_builds.values())
    if builds:
        print(
            f"Cold builds (excluded from the timings above): first commit {builds[0]:.2f}s"
            + (
                f"; one-file commits median {statistics.median(builds[1:]):.2f}s"
                if len(builds) > 1
                else ""
            )
        )
    print()
    print(
        "Where Shipyard's time goes (median run of each case; seconds; per-host stages "
        "are the slowest host's):"
    )
    cols = ("wall", "queue", "build", "conn-med", *SHOWN_STAGES, "hosts", "tail", "srv-CPU")
    print(f"{'hosts':>5}  {'case':<12}" + "".join(f"{c:>9}" for c in cols))
    for case in bench.cases:
        rows = []
        if case.runs:
            run = sorted(case.runs, key=lambda r: r.wall)[len(case.runs) // 2]
            rows.append((case.kind, run, _median(case.server_cpu)))
        rows += [(f"{case.kind[:5]} FAILED", r, float("nan")) for r in case.failed_runs]
        for label, run, server_cpu in rows:
            values = [*_breakdown(run), server_cpu]
            print(f"{case.hosts:>5}  {label:<12}" + "".join(f"{v:>9.2f}" for v in values))
    print(
        "  queue: POST start -> task running; build: fetch + cache lookup (warm); "
        "conn-med: median host's connect;\n  hosts: first connect -> last prune; "
        "tail: last step -> the poll seeing the final state;\n  srv-CPU: CPU-seconds of the "
        "server process during the deploy."
    )


def _breakdown(run: DeployRun) -> list[float]:
    st, task = run.stages, run.task
    started = parse_time(task["started_at"])
    finished = parse_time(task["finished_at"])
    queue = (started - run.posted_at).total_seconds()
    build = st["build"].longest if "build" in st else 0.0
    connect = _median(st["connect"].durations) if "connect" in st else 0.0
    per_stage = [st[s].longest if s in st else 0.0 for s in SHOWN_STAGES]
    firsts = [t for s in HOST_STAGES if s in st and (t := st[s].first_start) is not None]
    lasts = [t for s in HOST_STAGES if s in st and (t := st[s].last_finish) is not None]
    hosts = (max(lasts) - min(firsts)).total_seconds() if firsts and lasts else 0.0
    tail = run.wall - queue - (finished - started).total_seconds()
    return [run.wall, queue, build, connect, *per_stage, hosts, tail]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--hosts", default="1,10,50", help="comma-separated host counts")
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--mb", type=float, default=40, help="total size of the files, MiB")
    p.add_argument("--repeat", type=int, default=3, help="incremental rounds per host count")
    p.add_argument("--parallel", type=int, default=0, help="hosts at once (default: max hosts)")
    p.add_argument("--timeout", type=float, default=600, help="per deploy, seconds")
    p.add_argument("--workdir", default=None, help="parent of the temp dir (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, hosts' /srv)")
    p.add_argument("--py-spy", default=None, help="path to py-spy: profile each timed deploy")
    p.add_argument("--profile-dir", default="/tmp/shipyard-bench-profiles")
    p.add_argument("--profile-idle", action="store_true", help="py-spy --idle (wall time)")
    args = p.parse_args(argv)
    args.hosts = sorted({int(x) for x in args.hosts.split(",") if x.strip()})
    if not args.hosts or min(args.hosts) < 1 or args.repeat < 1 or args.files < 10:
        p.error("need host counts >= 1, --repeat >= 1 and --files >= 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-", dir=args.workdir))
    print(f"work dir {work}", flush=True)
    server: ShipyardServer | None = None
    try:
        t0 = time.monotonic()
        head = make_repo(work / "repo", files=args.files, total_bytes=int(args.mb * 2**20))
        print(
            f"synthetic repo: {args.files} files, {args.mb:g} MB ({time.monotonic() - t0:.1f}s)",
            flush=True,
        )
        with contextlib.ExitStack() as stack:
            fleet = Fleet(max(args.hosts), work / "fleet")
            stack.callback(fleet.stop)
            fleet.start()
            print(
                f"fleet: {len(fleet.hosts)} sshd host(s) on 127.0.0.2-"
                f"{fleet.hosts[-1].address}, port {fleet.port}",
                flush=True,
            )
            server = ShipyardServer(
                ROOT / ".venv" / "bin" / "shipyard",
                work / "home",
                password=secrets.token_urlsafe(16),
            )
            stack.callback(server.stop)
            server.start()
            print(f"shipyard serve: {server.url} (log {server.log_path})", flush=True)
            bench = Bench(
                args, work, fleet, server, Api.login(server.url, "admin", server.password)
            )
            bench.setup(head)
            stopped = False
            try:
                bench.run(head)
            except Exception as exc:
                stopped = True
                print(f"benchmark stopped: {exc}", file=sys.stderr)
            peak = None
            with contextlib.suppress(OSError, AssertionError, RuntimeError):
                peak = server.peak_rss_bytes()
            report(bench, peak)
        return 1 if stopped or any(c.failures for c in bench.cases) else 0
    except Exception as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        if server is not None:
            print(f"--- server log tail ---\n{server.log_tail()}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            # rm is much faster than shutil.rmtree on ~100 hosts' worth of release trees
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], timeout=1800, check=False)


if __name__ == "__main__":
    sys.exit(main())
