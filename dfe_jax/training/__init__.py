"""The trainer: pure steps, the device mesh, checkpoints and metrics."""
