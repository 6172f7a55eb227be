"""One module per group of figures; each `run(plan) -> list[Figure dict]`."""
