"""Loads a config file beside another by path, so configs can build on configs/rvq.py."""

import importlib.util
import os


def sibling(config_file, name):
  """The module `<folder of config_file>/<name>.py`, whatever the working directory."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"dfe_configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
