"""What every command does around its work: quiet library start-up, and one-line errors.

Commands import their libraries inside `main` (after flags are parsed), so `--help` answers at
once; `configure()` runs first and sets what must be set before JAX or TensorFlow load.
"""

import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging


class _LibraryNoiseFilter(std_logging.Filter):
  """Drops library log lines that read as failures in a healthy run (or flood it).

  Orbax logs a dozen INFO lines per save and warnings that a restored directory "is read only"
  and what read_only=True implies (it opens finished checkpoints read-only on purpose); JAX warns that it found no TPU while
  looking for backends on a CPU or GPU machine.
  """

  _MESSAGES = ("is read only", "read_only=True", "Unable to initialize backend 'tpu'",
               "apitools not found")

  def filter(self, record):
    if f"{os.sep}orbax{os.sep}" in record.pathname and record.levelno < std_logging.ERROR:
      return record.levelno >= std_logging.WARNING and not self._quiet(record)
    return not self._quiet(record)

  def _quiet(self, record):
    try:
      message = record.getMessage()
    except (TypeError, ValueError):
      return False
    return any(m in message for m in self._MESSAGES)


def configure():
  """Sets TensorFlow's and JAX's start-up options and log filters; call before importing them."""
  # TensorFlow serves only as the input pipeline's file reader; its C++ start-up notices (oneDNN,
  # CPU feature hints) drown the commands' own progress lines.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  noise = _LibraryNoiseFilter()
  logging.get_absl_handler().addFilter(noise)
  for name in ("absl", "jax._src.xla_bridge", "orbax", "apache_beam"):
    std_logging.getLogger(name).addFilter(noise)
  # Beam's DirectRunner logs its plumbing at INFO and WARNING; its errors still show.
  std_logging.getLogger("apache_beam").setLevel(std_logging.ERROR)


def fail(command, error):
  """Stops the command with one line naming it and what is wrong, exit status 1."""
  message = str(error).strip() or type(error).__name__
  print(f"{command}: error: {message}", file=sys.stderr)
  sys.exit(1)


def _flag_of(argv, text):
  """The command-line flag (`--name=value`) whose text appears in `text`, else None."""
  for arg in argv[1:]:
    name, _, value = arg.partition("=")
    path = value.split(":")[0]
    if name.startswith("--") and ((path and path in text) or name[2:] in text):
      return arg
  return None


def config_error_line(argv, error):
  """One line for an error ml_collections raises while loading a config file or override."""
  text = str(error.args[0] if error.args else error)
  suggestion = re.search(r"Did you mean \"([^\"]+)\"", text)
  if suggestion:
    key = re.search(r"instead of \"([^\"]+)\"", text)
    key = key.group(1) if key else text.split("'")[1] if "'" in text else "?"
    flag = next((a.split("=")[0] for a in argv[1:] if re.search(rf"\.{re.escape(key)}\b", a)),
                f"--config.{key}")
    return f"{flag}: no such config field; did you mean {suggestion.group(1)!r}?"
  if "get_config" in text:
    flag = next((a for a in argv[1:] if a.startswith("--") and a.endswith(".py")), "--config")
    return f"{flag}: the config file defines no get_config()"
  cause = error.__cause__ or error
  if isinstance(cause, FileNotFoundError) or "No such file" in text:
    flag = _flag_of(argv, text + str(cause)) or "--config"
    return f"{flag}: no such config file"
  first = next((line.strip() for line in text.splitlines() if line.strip()), type(error).__name__)
  where = _flag_of(argv, f"{text} {getattr(error, 'filename', '')}") or "flags"
  return f"{where}: {type(error).__name__}: {first}"


def flag_error_line(error):
  """absl's flag error in one line: the flag, and the last line of any traceback it quotes."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  flag = re.match(r"flag (\S+): ", lines[0]) if lines else None
  if len(lines) > 1 and flag:
    return f"{flag.group(1)}: {lines[-1]}"
  return lines[0] if lines else type(error).__name__


def _parse_flags(command):
  """absl's flag parsing, with ml_collections' config errors as one line."""
  def parse(argv):
    try:
      rest = flags.FLAGS(argv)
      for name in list(flags.FLAGS):
        flag = flags.FLAGS[name]
        if "Config" in type(flag).__name__:  # ml_collections defers load errors to first use.
          getattr(flag.value, "keys", None)
      return rest
    except flags.Error as e:
      fail(command, flag_error_line(e))
    except Exception as e:  # pylint: disable=broad-except  ml_collections raises plain errors.
      fail(command, config_error_line(argv, e))
  return parse


def run(main, module_name):
  """Runs `main(argv)` as an absl program after `configure()`; errors in flags are one line.

  `module_name` is the command module's `__name__`; errors name the command it runs.
  """
  command = os.path.basename(sys.argv[0]).removeprefix("dfe-").removesuffix(".py")
  if module_name != "__main__" or not command or command == "-c":
    command = module_name.rsplit(".", 1)[-1]

  def configured_main(argv):
    configure()
    return main(argv)
  app.run(configured_main, flags_parser=_parse_flags(command))
