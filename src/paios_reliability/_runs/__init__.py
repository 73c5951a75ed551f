"""Run state on shared stores: locks, idempotency, checkpoints, compare-and-set."""
