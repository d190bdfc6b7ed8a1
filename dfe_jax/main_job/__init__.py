"""The main job: every stage end to end on the built-in synthetic corpus, and its summary."""
