"""Where a run's code came from: the standard MLflow source tags.

The commit recorded is the one of the code that ran: the git checkout holding the ``uniav``
package (an editable install, as ``make env`` makes), else the current directory's checkout.
``mlflow.source.git.commit`` is the plain hash (the UI links it); uncommitted changes to
tracked files are flagged by ``uniav.git_dirty``.
"""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _git(directory: str | Path | None, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_state(directory: str | Path | None = None) -> tuple[str, bool] | None:
    """``(commit, dirty)`` of the checkout containing ``directory`` (the cwd when None), or
    None outside a checkout or in one without commits."""
    commit = _git(directory, "rev-parse", "--verify", "-q", "HEAD")
    if not commit:
        return None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def git_commit(directory: str | Path | None = None) -> str:
    """The current git commit (with ``-dirty`` if the tree has changes), or ``unknown``."""
    state = git_state(directory)
    if state is None:
        return "unknown"
    return state[0] + ("-dirty" if state[1] else "")


def source_tags(entry_point: str) -> dict[str, str]:
    """The standard source tags of a run started by ``entry_point`` (e.g. ``uniav train``):
    ``mlflow.source.{type,name,git.commit,git.repoURL}``, ``mlflow.user``, ``uniav.git_dirty``
    and, when the project directory is another checkout, ``uniav.project_git_commit``."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": entry_point}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (containers)
        pass
    code = git_state(PACKAGE_ROOT)
    project = git_state(None)
    state = code or project
    if state is not None:
        tags["mlflow.source.git.commit"] = state[0]
        tags["uniav.git_dirty"] = "true" if state[1] else "false"
        remote = _git(PACKAGE_ROOT if code else None, "config", "--get", "remote.origin.url")
        if remote:
            tags["mlflow.source.git.repoURL"] = remote
    if code is not None and project is not None and project[0] != code[0]:
        tags["uniav.project_git_commit"] = project[0] + ("-dirty" if project[1] else "")
    return tags
