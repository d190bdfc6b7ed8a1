"""The package's layers import downward only, as `docs/architecture.md` writes them down."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "dfe_jax"

# Which dfe_jax subpackages each layer may import (itself always), and which heavy libraries it
# must never import. `commands` are the modules at the top of the package.
ALLOWED = {
    "formats": set(),
    "video": {"formats"},
    "data": {"formats"},
    "models": set(),
    "training": {"formats", "data", "models"},
    "tokenizer": {"formats", "data", "models", "training"},
    "synthetic": {"formats", "data", "tokenizer"},
    "probing": {"formats"},
    "reporting": {"formats", "data", "models", "tokenizer", "synthetic", "video", "probing"},
    "main_job": {"formats", "data", "models", "training", "tokenizer", "synthetic", "probing",
                 "reporting"},
}
FORBIDDEN_LIBRARIES = {
    "formats": {"jax", "flax", "optax", "orbax", "tensorflow"},
    "video": {"jax", "flax", "optax", "orbax", "tensorflow"},
    "probing": {"jax", "flax", "optax", "orbax", "tensorflow"},
    "models": {"tensorflow"},
}
# Beside the commands, only these may import the trainer: restoring a checkpoint needs the train
# state's structure, and the main job trains.
TRAINING_IMPORTERS = {"tokenizer/trained_model.py", "main_job/stages.py"}
# Remote paths (gs://) are read through TensorFlow's file system, loaded only for such paths.
LAZY_TENSORFLOW = {"formats/filesystem.py"}
COMMANDS = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}


def _imports(path):
  """Every module name a file imports, at any depth (functions included)."""
  names = []
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
  return names


def _layer_files():
  for layer in ALLOWED:
    for path in sorted((PACKAGE / layer).rglob("*.py")):
      yield layer, path


def test_every_subpackage_has_a_rule():
  subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
  assert subpackages == set(ALLOWED)


@pytest.mark.parametrize("layer,path", list(_layer_files()),
                         ids=lambda x: str(x).split("dfe_jax/")[-1])
def test_layers_import_downward_only(layer, path):
  rel = path.relative_to(PACKAGE).as_posix()
  for name in _imports(path):
    parts = name.split(".")
    top = parts[0]
    if not (top == "tensorflow" and rel in LAZY_TENSORFLOW):
      assert top not in FORBIDDEN_LIBRARIES.get(layer, ()), f"{rel} imports {name}"
    if top != "dfe_jax" or len(parts) < 2:
      continue
    target = parts[1]
    assert target not in COMMANDS, f"{rel} imports the command module {name}"
    if target == "training" and layer != "training":
      assert rel in TRAINING_IMPORTERS, f"{rel} imports the trainer ({name})"
    if target in ALLOWED and target != layer:
      assert target in ALLOWED[layer], f"{rel} ({layer}) may not import {name}"


def test_imports_change_no_global_state():
  """Library modules set no environment variables, JAX/TF options or log filters at import."""
  suspicious = ("os.environ", "jax.config.update", "tf.config.", "addFilter(")
  for layer, path in _layer_files():
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: inside functions it runs when called
      if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)):
        text = ast.unparse(node)
        assert not any(s in text for s in suspicious), f"{path.name}: {text}"
