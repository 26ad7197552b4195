"""Which accelerator each worker gets: round-robin over the model's `deviceIds` or the visible GPUs.

The front end never imports torch (it would add seconds to startup and memory to every pod), so
visible GPUs are counted from `CUDA_VISIBLE_DEVICES` or the `/dev/nvidiaN` device nodes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

_NVIDIA_NODE = re.compile(r"nvidia\d+")


def visible_gpus(environ: Mapping[str, str], *, dev_dir: Path = Path("/dev")) -> tuple[int, ...]:
    """GPU ordinals as torch will number them inside a worker process."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry for entry in visible.split(",") if entry.strip() not in ("", "-1")]
        return tuple(range(len(entries)))
    try:
        nodes = [path for path in dev_dir.iterdir() if _NVIDIA_NODE.fullmatch(path.name)]
    except OSError:
        return ()
    return tuple(range(len(nodes)))


def gpu_for_worker(
    index: int, *, device_ids: Sequence[int], visible: Sequence[int], device_type: str
) -> int | None:
    """The GPU for the `index`-th worker of a model, or None to run it on the CPU."""
    if device_type == "cpu":
        return None
    devices = list(device_ids) or list(visible)
    return devices[index % len(devices)] if devices else None
