"""Training engine: configuration, run directories, the training loop."""
