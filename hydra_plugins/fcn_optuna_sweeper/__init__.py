"""fcn's Hydra sweeper plugin: hydra-optuna-sweeper whose study continues after a kill."""
