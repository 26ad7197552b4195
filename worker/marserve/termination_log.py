"""The init containers' last word: what Kubernetes shows in the pod status, and the operator on
the InferenceModel."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from marserve.contract import EXTRACT_ENV, TERMINATION_LOG_PATH


def write_termination_log(text: str) -> None:
    """Writes `text` where Kubernetes reads a container's termination message
    (`$MARSERVE_TERMINATION_LOG` in tests); outside a pod there is no such file, and nothing
    is written."""
    log = Path(os.environ.get(EXTRACT_ENV.termination_log) or TERMINATION_LOG_PATH)
    if log.exists():
        with contextlib.suppress(OSError):
            log.write_text(text + "\n")
