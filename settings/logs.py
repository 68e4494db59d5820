"""Library log silencing, in one place.

TensorFlow's C++ banner (CUDA probing, oneDNN notes), absl's pre-init warning and Python-level
deprecation notes drown a command's progress lines. Commands call `quiet_libraries()` before
TensorFlow is imported; a pipeline run still keeps the full log in <artifacts>/logs/.
"""
from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Keep TF's C++ log at errors (unless the user set TF_CPP_MIN_LOG_LEVEL) and the Python
    loggers of TensorFlow and absl at errors; warnings from libraries are not shown."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    for module in ("tensorflow", "keras", "tfx", "apache_beam", "tensorflow_transform",
                   "tensorflow_model_analysis", "tensorflow_data_validation"):
        warnings.filterwarnings("ignore", module=module)
