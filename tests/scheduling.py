"""pytest-xdist's `--dist loadgroup` as pytest 9 needs it: tests marked `xdist_group(NAME)` run on one worker, in
their order, the others one by one on whichever worker is free.

xdist 3.8 tells the controller a test's group by appending `@NAME` to its node id, which pytest 9 no longer lets
a plugin change (node ids are computed), so every test would count as a group of its own. Here the workers write
each grouped test's group to a file the controller named (CHARFLOW_TEST_GROUPS), and the controller's scheduler
reads it once every worker has collected."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

VARIABLE = "CHARFLOW_TEST_GROUPS"


def name_groups_file() -> None:
    """In the controller, before the workers start (they inherit the environment)."""
    os.environ[VARIABLE] = str(Path(tempfile.mkdtemp(prefix="charflow-test-groups-")) / "groups.json")


def remove_groups_file() -> None:
    """In the controller, at the end."""
    path = Path(os.environ.pop(VARIABLE))
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def write_groups(items) -> None:
    """In a worker, once its tests are collected and marked (every worker writes the same)."""
    path = Path(os.environ[VARIABLE])
    groups = {}
    for item in items:
        names = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        if names:
            groups[item.nodeid] = "_".join(names)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(groups))
    partial.replace(path)  # whole, whichever worker's copy wins


class GroupScheduling(LoadScopeScheduling):
    """A work unit per group, and per ungrouped test; handed out in collection order (`--no-loadscope-reorder`)
    or the largest first."""

    _groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:  # first asked once every worker's collection has come in
            path = Path(os.environ[VARIABLE])
            self._groups = json.loads(path.read_text()) if path.exists() else {}
        group = self._groups.get(nodeid)
        return f"group {group}" if group else nodeid
