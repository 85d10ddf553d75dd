"""The training task: the models, their parameters, the loop with its checkpoints, and greedy generation.

Pure PyTorch: no Prefect, no store. This runs as it is on a GPU machine.
"""
