"""Library log silencing and redirection, in one place.

TensorFlow's C++ banner (CUDA probing, oneDNN notes), absl's pre-init warning, Beam's and
TFX's warnings and Python-level deprecation notes drown a command's progress lines. Two
measures, both here:

* `quiet_libraries()`, called by commands before TensorFlow is imported, lowers what the
  libraries print at all;
* `library_output_to(log_file)` sends whatever they still print to file descriptor 2
  (C++ logs written before absl is initialised, `cuInit` failures, Beam workers' stderr,
  Python warnings) into the run's log file, while the command's own progress lines go to the
  terminal through `terminal()`. A C++ library writes to the descriptor, not to
  `sys.stderr`, which is why the redirection is done with dup2 and not in Python.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

_terminal: TextIO | None = None


def quiet_libraries() -> None:
    """Keep TF's C++ log at errors (unless the user set TF_CPP_MIN_LOG_LEVEL) and the Python
    loggers of TensorFlow and absl at errors; warnings from libraries are not shown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    for module in ("tensorflow", "keras", "tfx", "apache_beam", "tensorflow_transform",
                   "tensorflow_model_analysis", "tensorflow_data_validation"):
        warnings.filterwarnings("ignore", module=module)


def terminal() -> TextIO:
    """Where a command's progress lines go: the terminal's stderr, also while
    `library_output_to` has pointed descriptor 2 at a log file."""
    return _terminal or sys.stderr


def _redirectable() -> bool:
    """Only the process's real stderr is redirected: when something else has replaced
    sys.stderr (a test capturing output, an embedding program), it keeps everything."""
    try:
        return sys.stderr is sys.__stderr__ and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):
        return False


@contextmanager
def library_output_to(log_file: str | Path) -> Iterator[TextIO]:
    """Points file descriptor 2 (and so sys.stderr) at ``log_file`` (appended) while the block
    runs and yields a stream to the terminal's stderr for progress lines. Nested use keeps the
    outer redirection. Child processes started inside inherit the redirected descriptor."""
    global _terminal
    if _terminal is not None or not _redirectable():
        yield terminal()
        return
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    stream = os.fdopen(os.dup(saved), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                       errors="backslashreplace")
    with open(log_file, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 2)
    _terminal = stream
    try:
        yield stream
    finally:
        _terminal = None
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        stream.close()
