"""Everything Prefect: the flows, the stages as Prefect tasks, the cache policy and what the UI shows.

`flows.pipeline` (the wiring, and a runner without Prefect), `flows.params`, `flows.cluster` and the runtime
helpers the command shares with the flows (`flows.home`, `flows.interrupt`, `flows.progress`) import no Prefect.
"""
