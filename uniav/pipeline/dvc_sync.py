"""Snakemake agrees with DVC after DVC restored outputs (``dvc pull``, ``dvc checkout``,
``dvc exp apply``, the checkout inside ``dvc exp run --temp``).

The problem.  Snakemake decides what to rerun from its own records: modification times (an
input newer than an output reruns the job) and ``.snakemake/metadata`` (the params, code and
input set each output was made with).  DVC restores outputs by content: after a restore their
times are the restore's, in no particular order, and Snakemake's records of them are missing (a
fresh clone) or another version's (after a checkout).  Snakemake then plans to retrain models
that DVC reports up to date - or, with another version's records, can miss a real change.

What happens instead (the whole story: docs/pipeline.md, "Snakemake agrees with DVC after
`dvc pull`..."): before Snakemake plans anything, :func:`reconcile` (called by
``workflow/rules/common.smk``) compares a signature of every output of the job plan with the one recorded in
``.snakemake/uniav/dvc-sync.json`` when Snakemake last saw it.  Nothing differs: done, no DVC
call.  For outputs that changed outside Snakemake it asks ``dvc status --json`` about their
stage: outputs DVC vouches for (content and inputs as ``dvc.lock`` records) are
``snakemake --touch``-ed with the parameters of ``dvc.lock``; outputs whose upstream changed get
a 1970 modification time so that their jobs rerun; edits are left to Snakemake's own rules.
Inside a DVC stage (``DVC_STAGE``) only the stages before the running one are asked.

A real change is not hidden: a job is marked up to date only with the parameters that made its
outputs, and only when DVC reports their content and inputs to be those of ``dvc.lock``.  What
Snakemake cannot be told is an older *rule code* of a restored output (``snakemake --forcerun
<rule>``).  ``UNIAV_DVC_SYNC=0`` turns all this off.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from uniav.errors import InputError
from uniav.fileio import (atomic_write_json, atomic_write_text, load_yaml_file, parse_json_text,
                          read_json_object)

#: Snakemake's view of the outputs as last reconciled (path -> signature).
STAMP = Path(".snakemake") / "uniav" / "dvc-sync.json"
#: params.yaml with the parameters recorded in dvc.lock, for the touch run.
LOCKED_PARAMS = Path(".snakemake") / "uniav" / "dvc-locked-params.yaml"
#: The environment variable naming the Snakefile's configfile instead of params.yaml.
PARAMS_FILE = "UNIAV_PARAMS_FILE"
#: "0" turns reconciliation off (and marks the touch subprocess, which must not recurse).
SWITCH = "UNIAV_DVC_SYNC"
#: The modification time of outputs whose jobs must rerun (older than any input).
AGED = 0


# ---- what Snakemake last saw ---------------------------------------------------------------

def signature(path: str | Path) -> str | None:
    """Size, modification time and inode of a file, or of every file under a directory
    (relative names included), as a short digest; None when the path does not exist."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        return None
    digest = hashlib.sha256()
    if path.is_dir():
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                file = Path(folder) / name
                try:
                    stat = file.stat()
                except OSError:
                    continue
                digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0"
                              f"{stat.st_mtime_ns}\0{stat.st_ino}\n".encode())
    else:
        digest.update(f"{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}".encode())
    return digest.hexdigest()[:32]


def load_stamp(root: Path) -> dict[str, str] | None:
    """The recorded signatures, or None when there is no record."""
    data = read_json_object(root / STAMP)
    outputs = (data or {}).get("outputs")
    if not isinstance(outputs, dict):
        return None
    return {k: v for k, v in outputs.items() if isinstance(v, str)}


def save_stamp(root: Path, outputs: Mapping[str, str | None]) -> None:
    atomic_write_json(root / STAMP, {"outputs": {k: v for k, v in sorted(outputs.items())
                                                 if v is not None}})


def snakemake_has_records(root: Path) -> bool:
    """Whether Snakemake recorded any job here (its metadata directory is not empty)."""
    try:
        return any((root / ".snakemake" / "metadata").iterdir())
    except OSError:
        return False


# ---- what DVC says -------------------------------------------------------------------------

@dataclass
class LockedStage:
    """One stage of ``dvc.lock``: its outs and the parameters it ran with."""

    outs: list[str]
    #: dotted params.yaml key -> value
    params: dict[str, Any]


def read_lock(root: Path) -> dict[str, LockedStage]:
    """The stages of ``dvc.lock`` (empty without one).  Read as YAML 1.2, as DVC writes it
    (PyYAML, a YAML 1.1 reader, would take DVC's ``1e-08`` for a string)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        lock = YAML(typ="safe", pure=True).load((root / "dvc.lock").read_text(encoding="utf-8"))
    except (OSError, YAMLError):
        return {}
    lock = lock or {}
    stages = lock.get("stages") if isinstance(lock, dict) else None
    found = {}
    for name, stage in (stages if isinstance(stages, dict) else {}).items():
        stage = stage if isinstance(stage, dict) else {}
        outs = [os.path.normpath(out["path"]) for out in stage.get("outs") or []
                if isinstance(out, dict) and "path" in out]
        params = (stage.get("params") or {}).get("params.yaml") or {}
        found[name] = LockedStage(outs, dict(params) if isinstance(params, dict) else {})
    return found


def _inside(path: str, other: str) -> bool:
    path, other = os.path.normpath(path), os.path.normpath(other)
    return path == other or path.startswith(other.rstrip(os.sep) + os.sep)


def _changes(status: Any, kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in status if isinstance(status, list) else []:
        if isinstance(item, dict) and isinstance(item.get(kind), dict):
            found.update(item[kind])
    return found


def changed_outs(status: Any) -> set[str]:
    """The out paths one stage's ``dvc status --json`` entry reports changed."""
    return {os.path.normpath(path) for path in _changes(status, "changed outs")}


def changed_data_deps(status: Any, lock: Mapping[str, LockedStage]) -> set[str]:
    """The changed deps of one stage's ``dvc status --json`` entry that are outputs of the
    pipeline (not code, not parameters)."""
    outs = [out for stage in lock.values() for out in stage.outs]
    return {os.path.normpath(path) for path, change in _changes(status, "changed deps").items()
            if not isinstance(change, dict)
            and any(_inside(path, out) or _inside(out, path) for out in outs)}


def dvc_status(root: Path, stages: list[str]) -> dict[str, Any]:
    """``dvc status --json <stages>`` (stage -> changes; up-to-date stages are absent).

    Raises:
        RuntimeError: DVC failed (e.g. another DVC process holds a lock), with its output.
    """
    result = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *stages],
                            cwd=root, env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        data = parse_json_text(result.stdout or "{}") if result.returncode == 0 else None
    except InputError:
        data = None
    if not isinstance(data, dict):
        raise RuntimeError(f"`dvc status` failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return data


# ---- the decision --------------------------------------------------------------------------

@dataclass
class Decision:
    """What :func:`decide` found for the outputs that changed outside Snakemake."""

    #: per phase, in pipeline order: the outputs to mark up to date with the locked parameters
    #: (every output of the phase in a restored out, changed or not: their content is the lock's)
    touch: dict[str, list[str]] = field(default_factory=dict)
    #: outputs made older than any input, so that their jobs rerun
    age: list[str] = field(default_factory=list)
    #: outputs left to Snakemake's own rules (recorded as seen)
    adopt: list[str] = field(default_factory=list)
    #: outputs left for later (stages after the one DVC is running)
    pending: list[str] = field(default_factory=list)


def stages_to_ask(changed: Mapping[str, list[str]], phases: list[str],
                  running: str | None) -> list[str] | None:
    """The stages whose ``dvc status`` :func:`decide` needs, in order: from the first phase with
    changed outputs to the last (inside DVC: to the one before the running stage).  None: a
    running stage that is not a phase - nothing can be decided."""
    if running is not None and running not in phases:
        return None
    last = phases.index(running) if running is not None else len(phases)
    first = next((i for i, phase in enumerate(phases) if changed.get(phase)), last)
    return phases[first:last]


def decide(phase_outputs: Mapping[str, list[str]], changed: Mapping[str, list[str]],
           lock: Mapping[str, LockedStage], status: Mapping[str, Any],
           running: str | None = None) -> Decision:
    """Sort the outputs that changed outside Snakemake by what DVC says (module documentation).

    Args:
        phase_outputs: every output of each phase, phases in pipeline order.
        changed: per phase, its existing outputs whose signature changed since Snakemake last
            saw them.
        lock: the stages of ``dvc.lock`` (:func:`read_lock`).
        status: ``dvc status --json`` of the stages :func:`stages_to_ask` named (an up-to-date
            stage is absent).
        running: the DVC stage being run (``DVC_STAGE``), if any.

    A phase after a touched one is touched too when DVC reports it up to date, even without
    changed outputs: its outputs stay newer than their (touched) inputs.
    """
    phases = list(phase_outputs)
    decision = Decision()
    asked = stages_to_ask(changed, phases, running)
    if asked is None:
        decision.pending = [p for phase in phases for p in changed.get(phase, [])]
        return decision
    for index, phase in enumerate(phases):
        paths = changed.get(phase, [])
        if phase not in asked and phase != running:
            decision.pending += paths
            continue
        stage = lock.get(phase)
        if stage is None:
            decision.adopt += paths
            continue
        entry = status.get(phase)
        modified = changed_outs(entry)
        restored_outs = [out for out in stage.outs if out not in modified]

        def restored(path: str) -> bool:
            return any(_inside(path, out) for out in restored_outs)

        decision.adopt += [path for path in paths if not restored(path)]
        mine = [path for path in paths if restored(path)]
        everything = [path for path in phase_outputs[phase] if restored(path)]
        if phase in asked and not changed_data_deps(entry, lock):
            # up to date, or changed parameters (or code): what made the outputs is in
            # dvc.lock; Snakemake's params trigger reruns the jobs whose settings changed
            if mine or decision.touch:
                decision.touch[phase] = everything
        elif not mine:
            continue
        elif phase == running and index == 0:
            decision.touch[phase] = everything  # DVC runs the first stage: no inputs
        else:
            decision.age += mine            # their inputs changed (or DVC runs their stage)
    return decision


# ---- doing it ------------------------------------------------------------------------------

def with_locked(params: dict[str, Any], locked: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml (parsed) with each dotted key of ``locked`` set to its value."""
    out = copy.deepcopy(params)
    for key, value in locked.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = copy.deepcopy(value)
    return out


def touch_batches(decision: Decision, phase_outputs: Mapping[str, list[str]],
                  lock: Mapping[str, LockedStage]) -> list[list[str]]:
    """The touch runs, in pipeline order, each a list of phases.  A phase whose every output is
    touched may share a run with the next; one with outputs left alone runs alone (only its own
    rules in the DAG, so no other job of it is touched), as do phases locked with different
    values of a parameter."""
    batches: list[list[str]] = []
    for phase, paths in decision.touch.items():
        params = lock[phase].params
        last = batches[-1] if batches else None
        if (last is not None and all(set(decision.touch[p]) == set(phase_outputs[p])
                                     for p in last)
                and all(lock[p].params.get(k, v) == v for p in last for k, v in params.items())):
            last.append(phase)
        else:
            batches.append([phase])
    return batches


def touch(root: Path, snakefile: str, rules: list[str], targets: list[str],
          locked: Mapping[str, Any]) -> None:
    """``snakemake --touch --forceall`` of ``targets`` with only ``rules`` in the DAG; no
    profile, no hooks.  The configuration is params.yaml with the values ``locked`` (dotted key
    -> value, from dvc.lock), given as the Snakefile's configfile (:data:`PARAMS_FILE`) when
    they differ - not as ``--configfile``, whose values would win over the scale overlays the
    way command-line values do.

    Raises:
        RuntimeError: Snakemake failed (e.g. the directory is locked by another run), or
            params.yaml is unreadable.
    """
    env = _child_env()
    params = load_yaml_file(root / "params.yaml",
                            error=lambda message: RuntimeError(f"params.yaml: {message}")) or {}
    then = with_locked(params, locked)
    if then != params:
        atomic_write_text(root / LOCKED_PARAMS, "# params.yaml with the values of dvc.lock, for "
                          "the touch run of uniav/pipeline/dvc_sync.py\n"
                          + yaml.safe_dump(then, sort_keys=False))
        env[PARAMS_FILE] = str(LOCKED_PARAMS)
    command = [sys.executable, "-m", "snakemake", "--snakefile", snakefile, "--touch",
               "--forceall", "--cores", "1", "--workflow-profile", "none", "--no-hooks",
               "--quiet", "all", "--allowed-rules", *rules, "--", *targets]
    result = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"`snakemake --touch` failed ({result.returncode}): "
                           f"{result.stdout.strip()[-2000:]}")


def age(path: Path) -> None:
    """Give a file, or a directory and its Snakemake timestamp file, the time :data:`AGED`."""
    stamp = path / ".snakemake_timestamp"
    for target in ([stamp] if stamp.exists() else []) + [path]:
        os.utime(target, (AGED, AGED), follow_symlinks=False)


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SNAKEMAKE_PROFILE", PARAMS_FILE)}
    env[SWITCH] = "0"
    return env


@dataclass
class Reconciliation:
    """The outcome of :func:`reconcile`; :meth:`record_success` updates the record after a
    successful Snakemake run."""

    root: Path
    outputs: list[str]
    #: pending outputs -> their signature when Snakemake started
    pending: dict[str, str | None] = field(default_factory=dict)
    decision: Decision = field(default_factory=Decision)

    def record_success(self) -> None:
        """Record the current signatures, except of pending outputs Snakemake did not rewrite
        (they stay unresolved for the next run)."""
        stamp = load_stamp(self.root) or {}
        for path in self.outputs:
            now = signature(self.root / path)
            if path in self.pending and now == self.pending[path]:
                continue
            if now is None:
                stamp.pop(path, None)
            else:
                stamp[path] = now
        save_stamp(self.root, stamp)


def reconcile(root: Path, phase_outputs: Mapping[str, list[str]],
              phase_rules: Mapping[str, Iterable[str]], snakefile: str,
              log: Callable[[str], None] = print) -> Reconciliation | None:
    """Make Snakemake's records agree with DVC (see the module documentation).

    Args:
        root: the project directory (Snakemake's working directory, with ``dvc.yaml``).
        phase_outputs: the outputs of each phase, in pipeline order.
        phase_rules: the rules of each phase (``--allowed-rules`` of the touch runs).
        snakefile: the Snakefile, for the touch runs.
        log: where to say what was done.

    Returns:
        The reconciliation, or None when this is not a DVC project or reconciliation is off.
    """
    if os.environ.get(SWITCH) == "0" or not (root / ".dvc").is_dir():
        return None
    outputs = [path for paths in phase_outputs.values() for path in paths]
    result = Reconciliation(root, outputs)
    current = {path: signature(root / path) for path in outputs}
    stamp = load_stamp(root)
    if stamp is None and snakemake_has_records(root):
        save_stamp(root, current)
        return result
    stamp = stamp or {}
    changed = {phase: [p for p in paths if current[p] is not None and current[p] != stamp.get(p)]
               for phase, paths in phase_outputs.items()}
    if not any(changed.values()):
        return result
    lock = read_lock(root)
    running = os.environ.get("DVC_STAGE") or None
    existing = {phase: [p for p in paths if current[p] is not None]
                for phase, paths in phase_outputs.items()}
    try:
        asked = stages_to_ask(changed, list(phase_outputs), running) if lock else []
        status = dvc_status(root, asked) if asked else {}
        decision = (decide(existing, changed, lock, status, running) if lock
                    else Decision(adopt=[p for paths in changed.values() for p in paths]))
        for batch in touch_batches(decision, existing, lock):
            params = {k: v for phase in batch for k, v in lock[phase].params.items()}
            touch(root, snakefile, sorted({r for phase in batch for r in phase_rules[phase]}),
                  [path for phase in batch for path in decision.touch[phase]], params)
    except RuntimeError as exc:
        log(f"uniav: could not reconcile Snakemake with DVC ({exc}); Snakemake decides by its "
            f"own records")
        return result
    for path in decision.age:
        age(root / path)
    if decision.touch:
        log(f"uniav: outputs restored by DVC (stages {', '.join(decision.touch)}) marked as made "
            f"with the parameters of dvc.lock (snakemake --touch)")
    if decision.age:
        log(f"uniav: outputs restored by DVC whose inputs changed, to be remade: "
            f"{', '.join(decision.age)}")
    result.decision = decision
    result.pending = {p: current[p] for p in decision.pending}
    for path in outputs:
        if path not in result.pending:
            current[path] = signature(root / path)
    save_stamp(root, {**stamp, **{p: s for p, s in current.items()
                                  if p not in result.pending and s is not None}})
    return result
