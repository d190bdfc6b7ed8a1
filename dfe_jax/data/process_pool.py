"""Local process pools for embarrassingly parallel per-video work."""

import concurrent.futures
import contextlib
import multiprocessing


class _InProcess:
  """The pool interface, run in this process: no start-up cost for one worker."""

  def map(self, fn, *iterables):
    return map(fn, *iterables)


@contextlib.contextmanager
def process_pool(num_processes):
  """A pool whose `map` keeps input order; spawned, not forked (TensorFlow's threads do not
  survive a fork); in-process when `num_processes <= 1`."""
  if num_processes <= 1:
    yield _InProcess()
    return
  with concurrent.futures.ProcessPoolExecutor(
      num_processes, mp_context=multiprocessing.get_context("spawn")) as pool:
    yield pool
