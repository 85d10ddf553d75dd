"""Everything Prefect: the flows, the stages as Prefect tasks, the cache policy and what the UI shows.

`flows.pipeline` (the wiring, and a runner without Prefect), `flows.params` and `flows.cluster` import no Prefect.
"""
