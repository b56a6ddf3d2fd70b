"""Runs as jobs: DDP ranks under Hydra, cluster signals and requeue, job records, names."""
