"""Flows: they only wire the tasks of `tasks.prefect_tasks` together."""
