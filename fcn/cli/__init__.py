"""What every entry point shares: Hydra main, configs, resolvers, --help, known warnings."""
