"""The pipeline's stages: one pure module per stage (no Prefect), wrapped as Prefect tasks in `prefect_tasks`."""
