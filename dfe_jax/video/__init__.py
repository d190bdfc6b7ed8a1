"""The video front end: face videos -> per-video ARKit blendshape files (MediaPipe)."""
