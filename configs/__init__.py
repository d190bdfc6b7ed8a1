"""Training and probe configs; installed as `dfe_jax.configs` (see setup.py)."""
