"""The GPU probes' JSON results: what was measured, next to the GPU, torch and cuDNN versions."""

import json

import torch


def write_probe_json(path, **fields) -> None:
    """Write ``{"gpu", "torch", "cudnn", **fields}`` to ``path`` (nothing where ``path`` is
    empty: the probes' ``--json`` is optional)."""
    if not path:
        return
    doc = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
           "cudnn": torch.backends.cudnn.version(), **fields}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
