"""How many threads torch (the teachers) may use.

torch's default is one thread per core. On a machine that also runs anything else that
oversubscribes the cores, and a teacher slows down several-fold: on our shared 2-core machine one
thread was 4-7x faster per training step than torch's default. Thread pools read their
environment variables once, so set them before the first torch operation.
"""

import importlib.util
import logging
import os
import sys
from typing import Dict

logger = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def torch_thread_environment(threads: int) -> Dict[str, str]:
    """The environment variables that limit a child process's torch to `threads` (0: none)."""
    if threads < 0:
        raise ValueError(f"threads={threads}: expected 0 (torch's default) or more")
    return {name: str(threads) for name in THREAD_VARIABLES} if threads else {}


def set_torch_threads(threads: int) -> None:
    """Limit this process's torch, and the processes it starts, to `threads` (0: leave torch's
    default). Imports torch only where it is installed."""
    environment = torch_thread_environment(threads)
    if not environment:
        return
    os.environ.update(environment)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)
        logger.info("torch threads: %d", threads)
