"""The Prefect cache policy: a stage's Prefect cache key is its artifact's content key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.settings import get_current_settings
from prefect.transactions import IsolationLevel

from artifacts.backends import open_store, urls
from artifacts.stages import STAGES
from flows import home
from flows.locks import FlockLockManager, PostgresLockManager


@dataclass
class ContentKeyPolicy(CachePolicy):
    """Keyed by `stage`'s content key of the task's `inputs` and `params` (never by the task's name).

    Prefect trusts its record even when the files it points to are gone, so the record is dropped
    whenever the store does not hold an intact artifact under that key, or Prefect here could not read the
    result it names: the task then recomputes (the store stays the truth; its artifact is found again).
    """

    stage: str = ""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        key = STAGES[self.stage].key(inputs["inputs"], inputs["params"])
        record = Path(self.key_storage) / key
        if open_store(home.store_root()).lookup(self.stage, key) is None or not readable_here(record):
            record.unlink(missing_ok=True)
        return key

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Shipped to a Dask worker with its task: rebuilt there, under that worker's home and lock manager.
        return content_key_policy, (self.stage,)


def readable_here(record: Path) -> bool:
    """Whether this process's Prefect can read the result a cache record names. A record written under another
    PREFECT_HOME on this CHARFLOW_HOME (the user's own Prefect program, or a worker of theirs) names a file
    outside this process's result storage, which Prefect refuses with a ValueError instead of recomputing."""
    try:
        stored = json.loads(record.read_bytes())["storage_key"]
    except FileNotFoundError:
        return True  # no record: nothing to drop
    except (OSError, ValueError, KeyError, TypeError):
        return False
    storage = Path(get_current_settings().results.local_storage_path).expanduser().resolve()
    result = Path(stored).expanduser().resolve()
    return result.is_relative_to(storage) and result.is_file()


def content_key_policy(stage: str) -> ContentKeyPolicy:
    """Records and locks under CHARFLOW_HOME; SERIALIZABLE, so two concurrent runs compute once, and a lock
    cannot outlive its holder."""
    prefect = home.charflow_home() / "prefect"
    _, catalog = urls()
    # With a shared catalog, the lock must hold across machines: its database's advisory locks.
    locks = PostgresLockManager(catalog) if catalog else FlockLockManager(prefect / "locks")
    return ContentKeyPolicy(
        stage=stage,
        key_storage=prefect / "cache-keys",
        isolation_level=IsolationLevel.SERIALIZABLE,
        lock_manager=locks,
    )
