"""A private one-node SLURM cluster on this machine, for the SLURM test.

:func:`local_slurm_cluster` (a context manager; the ``slurm_cluster`` fixture of
``tests/pipeline/conftest.py`` wraps it) needs root.  It

1. installs the Debian packages ``slurmctld slurmd slurm-client munge`` when their programs are
   missing (``apt-get install --no-install-recommends``; ``apt-get update`` only when the install
   fails without it; a temporary ``/usr/sbin/policy-rc.d`` keeps the packages' scripts from
   starting services);
2. writes ``/etc/slurm/slurm.conf``.  It must sit at the default path: the Snakemake job-step
   plugin drops ``SLURM_CONF`` from the environment of the ``srun`` inside each job.  A file
   that is not ours (it lacks :data:`MARKER`) is moved aside and put back at teardown; ours (left
   by a killed run) is overwritten;
3. starts ``munged`` (unless one already answers), ``slurmctld`` and ``slurmd`` in the
   foreground, as child processes whose PIDs are recorded, bound to 127.0.0.1
   (``CommunicationParameters=NoCtldInAddrAny,NoInAddrAny``) on two free ports; one node,
   ``localhost``, with the machine's CPUs and memory (``slurmd -C``);
4. at teardown (also after a failure): cancels the jobs still known, stops the daemons by PID
   (SIGTERM, then SIGKILL), removes the configuration or restores the one it moved aside.

The daemons' PIDs are also written to :data:`RECORD`; a later run first stops daemons a killed
run left behind (same PID *and* same start time, so never an unrelated process).

Choices for this test cluster, and what a real cluster has instead (docs/pipeline.md, "SLURM"):
no accounting daemon (``AccountingStorageType=accounting_storage/none``), so ``sacct`` does not
work and Snakemake tracks jobs with ``squeue`` (``--slurm-status-command squeue``); finished
jobs stay visible to ``squeue``/``scontrol`` for ``MinJobAge`` seconds (far more than 3x the
first status-check delay, which the executor plugin requires); ``CR_Core_Memory`` with
``DefMemPerCPU`` so that one job does not take the whole node; ``proctrack/linuxproc`` and
``task/none`` (no cgroups needed in a container); a ``TaskProlog`` prints ``SLURM_JOB_ID``
into every job's output, the evidence the test checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

SLURM_CONF = Path("/etc/slurm/slurm.conf")
#: Where a foreign slurm.conf waits while the test cluster runs.
SLURM_CONF_BACKUP = SLURM_CONF.with_name("slurm.conf.uniav-test-backup")
#: First line of the configuration this module writes (tells ours from a foreign one).
MARKER = "# uniav test cluster: written by tests/pipeline/slurm_cluster.py, removed at teardown"
#: PIDs (and start times) of the daemons of the running test cluster.
RECORD = Path("/run/uniav-test-slurm/daemons.json")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN_DIR = Path("/run/munge")
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sbatch", "srun", "squeue",
            "scontrol", "sinfo", "scancel")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Finished jobs stay in slurmctld's memory (squeue --states=all, scontrol show job) this long.
MIN_JOB_AGE = 900
#: Per-CPU memory of a job that asks for none (MB).
DEF_MEM_PER_CPU = 1000
#: Why the SLURM tests skip for other users.
NEEDS_ROOT = ("the SLURM test needs root: it installs the Debian slurm/munge packages if "
              "missing, writes /etc/slurm/slurm.conf and starts munged, slurmctld and slurmd "
              "(CI runs as root)")


class ClusterError(RuntimeError):
    """The test cluster could not be set up."""


def is_root() -> bool:
    return os.geteuid() == 0


def clean_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) without the caller's SLURM client settings
    (SLURM_CONF, SBATCH_*, ...: the test cluster is configured by /etc/slurm/slurm.conf only),
    with the sbin directories at the end of PATH."""
    env = {key: value for key, value in (os.environ if base is None else base).items()
           if not key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_"))}
    env["PATH"] = f"{env.get('PATH', '')}{os.pathsep}{SBIN_PATH}"
    env.update(extra)
    return env


def program(name: str) -> str | None:
    return shutil.which(name, path=clean_env()["PATH"])


def _run(command: list[str], timeout: float, check: bool = True,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout, env=env or clean_env())
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stdout[-4000:]}")
    return result


# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------


def missing_programs() -> list[str]:
    return [name for name in PROGRAMS if program(name) is None]


def install_packages(timeout: float = 600) -> str:
    """apt-get install the SLURM and MUNGE packages when a program is missing.

    Returns what was done (for the test output).
    """
    if not missing_programs():
        return "SLURM and MUNGE programs present"
    env = clean_env(DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    policy = Path("/usr/sbin/policy-rc.d")
    # keep the packages' maintainer scripts from starting munge/slurmd/slurmctld services
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\n# uniav test: no service starts during apt-get\nexit 101\n")
        policy.chmod(0o755)
    try:
        started = time.monotonic()
        result = _run(install, timeout, check=False, env=env)
        if result.returncode != 0:
            _run(["apt-get", "update", "-q"], timeout, env=env)
            _run(install, timeout, env=env)
        seconds = time.monotonic() - started
    finally:
        if added_policy:
            policy.unlink(missing_ok=True)
    if missing_programs():
        raise ClusterError(f"still missing after apt-get install: {missing_programs()}")
    return f"installed {' '.join(PACKAGES)} in {seconds:.0f} s"


# ---------------------------------------------------------------------------------------------
# Daemons
# ---------------------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _stop_pid(pid: int, started: str | None, grace: float = 10) -> None:
    """SIGTERM the process if it is still the one started at `started`; SIGKILL after `grace`."""
    if started is None or _start_time(pid) != started:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _start_time(pid) != started:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop_recorded_daemons() -> list[str]:
    """Stop the daemons a killed earlier run recorded (by PID and start time)."""
    if not RECORD.is_file():
        return []
    try:
        recorded = json.loads(RECORD.read_text())
    except ValueError:
        recorded = {}
    stopped = []
    for name, entry in reversed(list(recorded.items())):
        pid, started = entry["pid"], entry["start_time"]
        if _start_time(pid) == started:
            _stop_pid(pid, started)
            stopped.append(f"{name} ({pid})")
    RECORD.unlink(missing_ok=True)
    return stopped


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def node_hardware() -> str:
    """CPUs, boards, sockets, cores, threads and memory of this machine (`slurmd -C`)."""
    line = _run([program("slurmd"), "-C"], 30).stdout.splitlines()[0]
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    values = dict(re.findall(r"(\w+)=(\S+)", line))
    memory = int(values["RealMemory"])
    hardware = " ".join(f"{key}={values[key]}" for key in keys if key in values)
    # leave room for the system (and other processes): the jobs ask for little anyway
    return f"{hardware} RealMemory={max(1000, int(memory * 0.8))}"


def slurm_conf(workdir: Path, ports: list[int], hardware: str) -> str:
    return f"""{MARKER}
# A one-node cluster for the SLURM test; see the module's docstring.  State and logs: {workdir}
ClusterName=uniavtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={workdir}/state
SlurmdSpoolDir={workdir}/spool
SlurmctldPidFile={workdir}/slurmctld.pid
SlurmdPidFile={workdir}/slurmd.pid
SlurmctldLogFile={workdir}/slurmctld.log
SlurmdLogFile={workdir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={workdir}/jobcomp.log
TaskProlog={workdir}/task_prolog.sh
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU={DEF_MEM_PER_CPU}
MinJobAge={MIN_JOB_AGE}
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


#: Runs before every task of every job; "print ..." lines go to the task's standard output,
#: i.e. into the job's SLURM log file.
TASK_PROLOG = """#!/bin/sh
echo "print uniav-slurm-test: SLURM_JOB_ID=${SLURM_JOB_ID} SLURM_STEP_ID=${SLURM_STEP_ID} \
SLURMD_NODENAME=${SLURMD_NODENAME}"
"""


@dataclass
class SlurmCluster:
    """The running test cluster."""

    workdir: Path
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)
    setup_notes: list[str] = field(default_factory=list)

    @property
    def slurmctld_log(self) -> Path:
        return self.workdir / "slurmctld.log"

    @property
    def jobcomp_log(self) -> Path:
        return self.workdir / "jobcomp.log"

    def command(self, *args: str, timeout: float = 30) -> str:
        return _run(list(args), timeout, env=self.env).stdout

    def show_job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job -o ID` as a dict (finished jobs stay MinJobAge seconds)."""
        text = self.command("scontrol", "show", "job", "-o", job_id)
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def queue(self) -> list[str]:
        """IDs of every job the controller knows, in any state."""
        return self.command("squeue", "--states=all", "--noheader", "--format=%i").split()


def _wait_for(what: str, ready, timeout: float, processes: dict[str, subprocess.Popen],
              logs: dict[str, Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise ClusterError(f"{name} exited with {process.returncode} while waiting for "
                                   f"{what}:\n{_tail(logs.get(name))}")
        if ready():
            return
        time.sleep(0.2)
    details = "\n".join(f"--- {name}\n{_tail(path)}" for name, path in logs.items())
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{details}")


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _munge_works(env: dict[str, str]) -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, env=env, timeout=10)
        if encoded.returncode != 0:
            return False
        decoded = subprocess.run(["unmunge"], input=encoded.stdout, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return decoded.returncode == 0


def _prepare_munge() -> None:
    """The key and the run directory munged needs (systemd would create /run/munge)."""
    user = pwd.getpwnam("munge")
    if not MUNGE_KEY.is_file():
        MUNGE_KEY.parent.mkdir(mode=0o700, exist_ok=True)
        os.chown(MUNGE_KEY.parent, user.pw_uid, user.pw_gid)
        MUNGE_KEY.write_bytes(os.urandom(1024))
        MUNGE_KEY.chmod(0o400)
        os.chown(MUNGE_KEY, user.pw_uid, user.pw_gid)
    MUNGE_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    os.chown(MUNGE_RUN_DIR, user.pw_uid, user.pw_gid)


def _install_conf(text: str) -> None:
    if SLURM_CONF.is_file():
        current = SLURM_CONF.read_text(errors="replace")
        if not current.startswith(MARKER):
            if SLURM_CONF_BACKUP.exists():
                raise ClusterError(f"{SLURM_CONF} is foreign and {SLURM_CONF_BACKUP} exists "
                                   "already: restore one of them by hand")
            SLURM_CONF.rename(SLURM_CONF_BACKUP)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(text)


def _remove_conf() -> None:
    if SLURM_CONF.is_file() and SLURM_CONF.read_text(errors="replace").startswith(MARKER):
        SLURM_CONF.unlink()
    if SLURM_CONF_BACKUP.exists() and not SLURM_CONF.exists():
        SLURM_CONF_BACKUP.rename(SLURM_CONF)


@contextlib.contextmanager
def local_slurm_cluster(workdir: Path, start_timeout: float = 60) -> Iterator[SlurmCluster]:
    """Install (if needed), configure and start a one-node cluster; stop and clean up after."""
    if not is_root():
        raise ClusterError("a local SLURM cluster needs root")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    notes = [install_packages()]
    stale = stop_recorded_daemons()
    if stale:
        notes.append(f"stopped daemons left by an earlier run: {', '.join(stale)}")
    env = clean_env()
    cluster = SlurmCluster(workdir=workdir, env=env, setup_notes=notes)
    processes: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    record: dict[str, dict] = {}

    def start(name: str, command: list[str], **kwargs) -> None:
        log = workdir / f"{name}.out"
        logs[name] = log
        with open(log, "w") as output:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                       stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                       start_new_session=True, **kwargs)
        processes[name] = process
        cluster.pids[name] = process.pid
        record[name] = {"pid": process.pid, "start_time": _start_time(process.pid)}
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(record))

    try:
        for sub in ("state", "spool"):
            (workdir / sub).mkdir(exist_ok=True)
        prolog = workdir / "task_prolog.sh"
        prolog.write_text(TASK_PROLOG)
        prolog.chmod(0o755)
        _install_conf(slurm_conf(workdir, _free_ports(2), node_hardware()))

        _prepare_munge()
        if _munge_works(env):
            notes.append("munged already running: used as it is")
        else:
            # as the munge user (owner of the key); it logs to /var/log/munge/munged.log
            start("munged", [program("munged"), "--foreground"], user="munge", group="munge")
            _wait_for("munged", lambda: _munge_works(env), start_timeout, processes, logs)

        start("slurmctld", [program("slurmctld"), "-D", "-i"])
        logs["slurmctld.log"] = cluster.slurmctld_log

        def controller_up() -> bool:
            return subprocess.run(["scontrol", "ping"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, env=env, timeout=10,
                                  text=True).stdout.count("UP") > 0

        _wait_for("slurmctld", controller_up, start_timeout, processes, logs)
        start("slurmd", [program("slurmd"), "-D", "-N", "localhost"])
        logs["slurmd.log"] = workdir / "slurmd.log"

        def node_idle() -> bool:
            state = subprocess.run(["sinfo", "--noheader", "--format=%T", "--nodes=localhost"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                   timeout=10, text=True).stdout.strip()
            return state == "idle"

        _wait_for("node localhost to be idle", node_idle, start_timeout, processes, logs)
        yield cluster
    finally:
        _teardown(cluster, processes, env)


def _teardown(cluster: SlurmCluster, processes: dict[str, subprocess.Popen],
              env: dict[str, str]) -> None:
    if "slurmctld" in processes and processes["slurmctld"].poll() is None:
        # cancel what still runs: job steps outlive slurmd otherwise
        with contextlib.suppress(Exception):
            active = subprocess.run(
                ["squeue", "--noheader", "--format=%i", "--states=PENDING,RUNNING,COMPLETING"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, timeout=10,
                text=True).stdout.split()
            if active:
                subprocess.run(["scancel", "--full", *active], env=env, timeout=30,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and subprocess.run(
                        ["squeue", "--noheader", "--format=%i",
                         "--states=PENDING,RUNNING,COMPLETING"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, timeout=10,
                        text=True).stdout.split():
                    time.sleep(0.5)
    for name in ("slurmd", "slurmctld", "munged"):
        process = processes.get(name)
        if process is None:
            continue
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
    RECORD.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        RECORD.parent.rmdir()
    _remove_conf()
