"""The pipeline's stages: one pure, typed module per stage (data to data, no orchestration, no store)."""
