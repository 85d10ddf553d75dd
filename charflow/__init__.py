"""charflow: versioned character-level training data and models, on Prefect."""

__version__ = "0.1.0"
