"""One training run: the LightningModule, metrics, optimisers, callbacks, loggers, figures."""
