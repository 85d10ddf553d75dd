"""The Prefect cache policy: a stage's Prefect cache key is its artifact's content key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import IsolationLevel

from artifacts.backends import open_store, urls
from artifacts.stages import STAGES
from flows import home
from flows.locks import FlockLockManager, PostgresLockManager


@dataclass
class ContentKeyPolicy(CachePolicy):
    """Keyed by `stage`'s content key of the task's `inputs` and `params` (never by the task's name).

    Prefect trusts its record even when the files it points to are gone, so the record is dropped
    whenever the store does not hold an intact artifact under that key: the task then recomputes.
    """

    stage: str = ""

    def compute_key(
        self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any
    ) -> str | None:
        key = STAGES[self.stage].key(inputs["inputs"], inputs["params"])
        if open_store(home.store_root()).lookup(self.stage, key) is None:
            (Path(self.key_storage) / key).unlink(missing_ok=True)
        return key

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # Shipped to a Dask worker with its task: rebuilt there, under that worker's home and lock manager.
        return content_key_policy, (self.stage,)


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
