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


def launch_prefix() -> str:
    """The result file's name prefix for kernels not launched the default way (on a GPU):
    ``no-pdl-`` without programmatic launch (``SEGBLOCKS_PDL=0``, or a GPU before Hopper),
    ``no-prefetch-`` with it but BlockPad's lookups after the wait (``SEGBLOCKS_PDL_PREFETCH=0``)."""
    from segblocks_core import ops  # the caller's checkout (the scripts put it on sys.path)
    if not ops.programmatic_launch():
        return "no-pdl-"
    return "" if ops.programmatic_prefetch() else "no-prefetch-"
