"""Where a flow's tasks run: in this process (Prefect's thread pool, the default), or on the Dask cluster at
CHARFLOW_DASK_ADDRESS through prefect-dask, the whole task (cache policy, lock, build, result) on a worker.

Workers may each have their own CHARFLOW_HOME: they meet in the shared object store and the PostgreSQL
catalog, so both must be set, on the command's machine and on every worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any, TypeVar

from prefect import Task
from prefect.context import FlowRunContext
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from flows.cluster import ComputeError, check, dask_address, security

# Corpora prepared at once by one reingest on a cluster: each waits on its workers, not on this machine.
MAX_CONCURRENT_CORPORA = 8

T = TypeVar("T")
R = TypeVar("R")


class ConfiguredTaskRunner(ThreadPoolTaskRunner):
    """The flows' task runner, chosen as each flow run starts (Prefect duplicates the flow's runner then):
    a `DaskTaskRunner` on CHARFLOW_DASK_ADDRESS, else Prefect's thread pool."""

    def duplicate(self) -> ThreadPoolTaskRunner | Any:
        address = dask_address()
        if address is None:
            return ThreadPoolTaskRunner(max_workers=self._max_workers)
        check(address)
        from prefect_dask import DaskTaskRunner

        tls = security(address)  # a tls:// scheduler: this client's certificate, encryption required
        return DaskTaskRunner(address=address, client_kwargs={"security": tls} if tls else None)


def on_cluster() -> bool:
    context = FlowRunContext.get()
    if context is None or context.task_runner is None:
        return False
    # By name: importing prefect_dask loads distributed, which a run without a cluster has no use for.
    return type(context.task_runner).__name__ == "DaskTaskRunner"


def run_task(task: Task[..., R], **parameters: Any) -> State[R]:
    """Run `task` and return its final state: on a cluster, submitted to it (a plain call would run it here)."""
    if not on_cluster():
        return task(**parameters, return_state=True)
    future = task.submit(**parameters)
    future.wait()
    state = future.state
    if not state.is_final():
        raise ComputeError(f"the {task.name} task ended in state {state.name} on the Dask cluster: {state.message}")
    return state


def call(task: Task[..., R], **parameters: Any) -> R:
    return run_task(task, **parameters).result()


def each(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`work` on every item, in order: at once on a cluster (each call waits on its own tasks there, and
    carries this flow run's context into its thread), one after the other here."""
    items = list(items)
    if not on_cluster() or len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(min(len(items), MAX_CONCURRENT_CORPORA), thread_name_prefix="corpus") as pool:
        futures = [pool.submit(copy_context().run, work, item) for item in items]
        return [future.result() for future in futures]
