"""``segblocks-eval-bag``: choose tau from your own rosbag2 recordings.

    segblocks-eval-bag BAG --image-topic /camera/image_raw [--label-topic /camera/labels]
        [--taus 0.1,0.2,0.3,0.5] [--model swiftnet_rn18] [--checkpoint FILE]
        [--device auto] [--precision fp32] [--max-frames N] [--max-drop 1.0] --out DIR

Replays the camera frames of a bag (``sensor_msgs/Image`` in every encoding the node
accepts, or ``CompressedImage`` jpeg/png) through
:meth:`segblocks_core.engine.SegmentationEngine.infer`, the node's own inference entry
point, once with the dense network (the baseline row) and once per tau. Every frame is
read and decoded once; all configurations run on it before the next frame is read, so the
bag is streamed (memory does not grow with its length) and the dense prediction that the
adaptive rows are compared with is at hand.

Per configuration (row) it reports: frames, mean share of high-resolution blocks,
effective and executed GMACs per frame, latency (the engine's ``total_ms`` per frame:
preprocessing, network and copying the labels back) mean/p50/p95, FPS, peak memory,
mIoU and pixel accuracy against the bag's labels (mono8 class ids, 255 = ignore, matched
to images by header stamp; Cityscapes definition: one confusion matrix accumulated over
all labelled frames), and *agreement*: the mIoU of the row's predictions with the dense
network's predictions as ground truth (100 for the dense row; needs no labels).

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU (weights included), the
largest over the row's ``infer`` calls. On a CPU it is the process's peak resident set
size during the row's calls (Linux: ``/proc/self/clear_refs`` resets the peak to the
current RSS before each call, ``VmHWM`` is read after it); where that reset is not
possible it is the process's lifetime ``ru_maxrss``, the same for every row. Both CPU
numbers are the whole process (Python, torch, weights, and heap the allocator keeps), so
rows differ less than on a GPU. The report names which (``memory_kind``).

The recommendation is the largest tau whose accuracy drop from the dense row (mIoU vs
labels when the bag has labels, else agreement) stays within ``--max-drop`` points. With
random weights (no checkpoint) the mIoU vs labels is noise, so agreement is used then.

Outputs in ``--out``: ``report.json`` (everything, including per-frame numbers),
``report.md`` (the table) and ``tradeoff.png`` (accuracy or agreement vs GMACs and vs
latency). They are written to a temporary folder and moved into place at the end,
``report.json`` last: a ``report.json`` is always part of a finished report.

Errors a user can cause (missing path, not a bag, corrupt file, unknown topic, wrong
message type, unsupported encoding, zero frames, a bad checkpoint or device) end the
program with exit status 1 and one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from segblocks_core.metrics import confusion_matrix, miou, per_class_iou, pixel_accuracy

from .bagfiles import (COMPRESSED_TYPE, IMAGE_TYPE, BagError, FrameStats, list_topics,
                       read_frames)
from .image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, decode

__all__ = ["EvalError", "Row", "FrameAccounting", "Recommendation", "Report", "evaluate_bag",
           "write_report", "format_table", "parse_taus", "main", "DEFAULT_TAUS"]

PROG = "segblocks-eval-bag"
DEFAULT_TAUS = (0.1, 0.2, 0.3, 0.5)
DENSE = "dense"
log = logging.getLogger("segblocks_ros.eval_bag")


class EvalError(RuntimeError):
    """The evaluation cannot run as asked (the message says why, in one line)."""


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """One configuration of the sweep: the dense network or one tau.

    Attributes:
        name: ``dense`` or ``tau=<value>``.
        tau: the threshold (None for the dense row).
        frames: frames run through this configuration.
        frames_with_labels: of those, frames with a label image (the mIoU is over these).
        highres_fraction: mean share of high-resolution blocks (1 for dense).
        gmacs_effective, gmacs_executed, gmacs_dense: mean GMACs per frame (executed
            includes the BlockPad halo overhead; dense is the reference).
        latency_ms_mean, latency_ms_p50, latency_ms_p95: engine ``total_ms`` per frame.
        fps: frames / total inference time.
        peak_memory_mib: see ``Report.memory_kind``.
        miou, pixel_accuracy: percent vs labels (None without labelled frames).
        per_class_iou: ``{class name: IoU percent or None}`` vs labels.
        agreement_miou, agreement_pixel_accuracy: percent vs the dense predictions.
        drop: points lost vs the dense row in ``Report.metric``.
    """

    name: str
    tau: Optional[float]
    frames: int = 0
    frames_with_labels: int = 0
    highres_fraction: float = math.nan
    gmacs_effective: float = math.nan
    gmacs_executed: float = math.nan
    gmacs_dense: float = math.nan
    latency_ms_mean: float = math.nan
    latency_ms_p50: float = math.nan
    latency_ms_p95: float = math.nan
    fps: float = math.nan
    peak_memory_mib: float = math.nan
    miou: Optional[float] = None
    pixel_accuracy: Optional[float] = None
    per_class_iou: Optional[dict] = None
    agreement_miou: float = math.nan
    agreement_pixel_accuracy: float = math.nan
    drop: float = math.nan

    @property
    def adaptive(self) -> bool:
        return self.tau is not None


@dataclass
class FrameAccounting:
    """Where every message of the image and label topics went.

    ``images_in_bag == evaluated + not_evaluated`` and
    ``evaluated == with_label + images_without_label`` always hold.

    Attributes:
        images_in_bag: messages on the image topic (bag metadata).
        labels_in_bag: messages on the label topic (None without one).
        evaluated: frames run through every configuration.
        with_label: evaluated frames that found a label of the same header stamp.
        images_without_label: evaluated frames without a label (label topic given).
        labels_without_image: label messages whose stamp matched no image, among the
            messages read (all of them unless ``--max-frames`` stopped the reading).
        not_evaluated: images not evaluated because ``--max-frames`` was reached.
        complete: the whole bag was read.
    """

    images_in_bag: int = 0
    labels_in_bag: Optional[int] = None
    evaluated: int = 0
    with_label: int = 0
    images_without_label: int = 0
    labels_without_image: int = 0
    not_evaluated: int = 0
    complete: bool = True


@dataclass
class Recommendation:
    """The largest tau whose drop stays within ``max_drop`` points (None: no tau did)."""

    tau: Optional[float]
    metric: str
    max_drop: float
    drop: Optional[float]
    gmacs_saving_percent: Optional[float]
    latency_change_percent: Optional[float]
    message: str


@dataclass
class Report:
    """Everything ``segblocks-eval-bag`` measured (``to_dict`` is ``report.json``)."""

    bag: str
    image_topic: str
    label_topic: Optional[str]
    image_type: str
    width: int
    height: int
    model: str
    checkpoint: Optional[str]
    device: str
    precision: str
    block_size: int
    batch_size: int
    num_classes: int
    class_names: list
    metric: str                 # "miou" (vs labels) or "agreement"
    memory_kind: str
    frames: FrameAccounting
    rows: list
    recommendation: Recommendation
    per_frame: list = field(default_factory=list, repr=False)
    created: str = ""
    torch_version: str = ""

    @property
    def weights(self) -> str:
        return self.checkpoint or "RANDOM WEIGHTS (no checkpoint: accuracy is meaningless)"

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = self.weights
        for row, r in zip(d["rows"], self.rows):
            row["adaptive"] = r.adaptive
        return _json_safe(d)


def _json_safe(value):
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _row_name(tau: Optional[float]) -> str:
    return DENSE if tau is None else f"tau={tau:g}"


# ---------------------------------------------------------------------------------------
# measurement helpers
# ---------------------------------------------------------------------------------------


class _PeakMemory:
    """Peak memory of one inference call, on the GPU or the CPU (see the module doc)."""

    def __init__(self, device):
        import torch

        self._torch = torch
        self.device = device
        self._clear_refs = False
        if device.type == "cuda":
            self.kind = "cuda_max_memory_allocated"
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self._status_kib("VmHWM")
                self._clear_refs = True
                self.kind = "cpu_process_peak_rss"
            except (OSError, ValueError):
                self.kind = "cpu_process_max_rss"

    @staticmethod
    def _status_kib(key: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise ValueError(f"{key} not in /proc/self/status")

    def start(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.reset_peak_memory_stats(self.device)
        elif self._clear_refs:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")            # peak RSS := current RSS

    def stop(self) -> float:
        """Peak since :meth:`start` in MiB."""
        if self.device.type == "cuda":
            return self._torch.cuda.max_memory_allocated(self.device) / 2**20
        if self._clear_refs:
            return self._status_kib("VmHWM") / 1024
        # ru_maxrss is KiB on Linux, bytes on macOS
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class _Progress:
    """A one-line progress bar on a terminal (nothing when disabled)."""

    def __init__(self, total: int, enabled: bool, stream=None, width: int = 30):
        self.total, self.enabled, self.width = max(total, 1), enabled, width
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        bar = "#" * int(round(frac * self.width))
        rate = done / max(time.monotonic() - self.t0, 1e-9)
        self.stream.write(f"\r{PROG} [{bar:<{self.width}}] {done}/{self.total} frames "
                          f"{rate:.1f} frames/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class _RowAccumulator:
    """Running sums of one configuration."""

    def __init__(self, tau: Optional[float], num_classes: int):
        self.tau = tau
        self.k = num_classes
        self.highres: list[float] = []
        self.eff: list[float] = []
        self.exe: list[float] = []
        self.dense: list[float] = []
        self.latency: list[float] = []
        self.batch_ms = 0.0
        self.peak = 0.0
        self.labelled = 0
        self.conf_labels = np.zeros((num_classes, num_classes), np.int64)
        self.conf_agree = np.zeros((num_classes, num_classes), np.int64)

    def add(self, result, peak_mib: float, dense_labels: np.ndarray, targets: list) -> None:
        for i, s in enumerate(result.stats):
            self.highres.append(s.highres_fraction)
            self.eff.append(s.gmacs_effective)
            self.exe.append(s.gmacs_executed)
            self.dense.append(s.gmacs_dense)
            # a frame waits for its whole batch
            self.latency.append(s.total_ms)
            if targets[i] is not None:
                self.conf_labels += confusion_matrix(result.labels[i], targets[i], self.k)
                self.labelled += 1
        self.batch_ms += result.stats[0].total_ms
        self.peak = max(self.peak, peak_mib)
        # the dense network's ids are all in [0, K): every pixel counts
        self.conf_agree += confusion_matrix(result.labels, dense_labels, self.k, ignore_index=None)

    def row(self, class_names: Sequence[str]) -> Row:
        lat = np.asarray(self.latency, np.float64)
        r = Row(name=_row_name(self.tau), tau=self.tau, frames=len(self.latency),
                frames_with_labels=self.labelled,
                highres_fraction=float(np.mean(self.highres)), gmacs_effective=float(np.mean(self.eff)),
                gmacs_executed=float(np.mean(self.exe)), gmacs_dense=float(np.mean(self.dense)),
                latency_ms_mean=float(lat.mean()), latency_ms_p50=float(np.percentile(lat, 50)),
                latency_ms_p95=float(np.percentile(lat, 95)),
                fps=1e3 * len(lat) / self.batch_ms if self.batch_ms > 0 else math.inf,
                peak_memory_mib=self.peak,
                agreement_miou=miou(self.conf_agree),
                agreement_pixel_accuracy=pixel_accuracy(self.conf_agree))
        if self.labelled and self.conf_labels.sum() > 0:
            r.miou = miou(self.conf_labels)
            r.pixel_accuracy = pixel_accuracy(self.conf_labels)
            r.per_class_iou = {name: (None if math.isnan(v) else float(v))
                               for name, v in zip(class_names, per_class_iou(self.conf_labels))}
        return r


# ---------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------


class _Sweep:
    """Runs every configuration on each batch of frames and accumulates the rows.

    The engine is made on the first batch, so a bag that cannot be read or decoded fails
    before the model is loaded.
    """

    def __init__(self, make_engine: Callable, configs: list, warmup: int, label_topic: Optional[str]):
        self._make_engine = make_engine
        self.configs = configs          # None = dense, then the taus
        self.warmup = warmup
        self.label_topic = label_topic
        self.engine = None
        self.memory: Optional[_PeakMemory] = None
        self.rows: dict = {}
        self.per_frame: list[dict] = []

    def _infer(self, images: list, tau: Optional[float]):
        return self.engine.infer(images, tau=0.0 if tau is None else tau, adaptive=tau is not None)

    def run(self, batch: list) -> int:
        """Evaluate ``[(frame, rgb, label or None)]`` (one image size); returns its length."""
        images = [rgb for _, rgb, _ in batch]
        targets = [label for _, _, label in batch]
        if self.engine is None:
            self.engine = self._make_engine()
            self.memory = _PeakMemory(self.engine.device)
            self.rows = {tau: _RowAccumulator(tau, self.engine.num_classes) for tau in self.configs}
            for tau in self.configs:
                for _ in range(self.warmup):
                    self._infer(images, tau)
        records = [{"stamp_ns": f.stamp_ns, "frame_id": f.frame_id, "has_label": label is not None,
                    "rows": {}} for f, _, label in batch]
        dense_labels = None
        for tau in self.configs:       # dense first: the adaptive rows are compared with it
            self.memory.start()
            result = self._infer(images, tau)
            peak = self.memory.stop()
            if tau is None:
                dense_labels = result.labels
            try:
                self.rows[tau].add(result, peak, dense_labels, targets)
            except ValueError as exc:
                raise EvalError(f"labels on {self.label_topic}: {exc} (the model has "
                                f"{self.engine.num_classes} classes; --num-classes)") from None
            for rec, st in zip(records, result.stats):
                rec["rows"][_row_name(tau)] = {
                    "highres_fraction": st.highres_fraction, "gmacs_effective": st.gmacs_effective,
                    "gmacs_executed": st.gmacs_executed, "total_ms": st.total_ms}
        self.per_frame.extend(records)
        return len(batch)




def parse_taus(text: str) -> list[float]:
    """``"0.1,0.2,0.3"`` -> sorted unique finite taus >= 0 (ValueError otherwise)."""
    taus = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            tau = float(part)
        except ValueError:
            raise ValueError(f"tau {part!r} is not a number") from None
        if not math.isfinite(tau) or tau < 0:
            raise ValueError(f"tau must be a finite number >= 0, got {part}")
        taus.append(tau)
    if not taus:
        raise ValueError("give at least one tau, e.g. --taus 0.1,0.3")
    return sorted(set(taus))


def _check_topics(bag, image_topic: str, label_topic: Optional[str]) -> tuple[dict, str]:
    topics = list_topics(bag)
    listing = ", ".join(f"{t} ({i.msgtype}, {i.count} msgs)" for t, i in sorted(topics.items())) or "none"
    for name, what in ((image_topic, "image"), (label_topic, "label")):
        if name is not None and name not in topics:
            raise BagError(f"{what} topic {name!r} is not in {bag}; its topics: {listing}")
    if topics[image_topic].msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
        raise BagError(f"image topic {image_topic!r} carries {topics[image_topic].msgtype}, "
                       f"expected {IMAGE_TYPE} or {COMPRESSED_TYPE}")
    if label_topic is not None and topics[label_topic].msgtype != IMAGE_TYPE:
        raise BagError(f"label topic {label_topic!r} carries {topics[label_topic].msgtype}, "
                       f"expected {IMAGE_TYPE} (mono8 class ids)")
    if label_topic is not None and label_topic == image_topic:
        raise EvalError("--image-topic and --label-topic must differ")
    return topics, listing


def _make_engine(model, checkpoint, num_classes, device, precision, block_size):
    from segblocks_core.checkpoint import CheckpointError
    from segblocks_core.engine import SegmentationEngine

    try:
        return SegmentationEngine(model=model, checkpoint=checkpoint, num_classes=num_classes,
                                  device=device, precision=precision, block_size=block_size)
    except CheckpointError as exc:
        raise EvalError(f"{exc} (--checkpoint)") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise EvalError(str(exc).strip("'\"")) from None


def evaluate_bag(bag, image_topic: str, label_topic: Optional[str] = None,
                 taus: Sequence[float] = DEFAULT_TAUS, *, engine=None,
                 model: str = "swiftnet_rn18", checkpoint: Optional[str] = None,
                 num_classes: int = 19, device: str = "auto", precision: str = "fp32",
                 block_size: int = 128, batch_size: int = 1, max_frames: Optional[int] = None,
                 max_drop: float = 1.0, warmup: int = 1, max_delay_s: float = 5.0,
                 max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False) -> Report:
    """Run the frames of a bag through the dense network and every tau.

    Args:
        bag: rosbag2 directory (or its ``.db3``/``.mcap`` file).
        image_topic: ``sensor_msgs/Image`` or ``CompressedImage`` topic.
        label_topic: mono8 class-id topic (255 = ignore), matched by header stamp; or None.
        taus: thresholds to sweep (sorted; the dense row always comes first).
        engine: a ready :class:`~segblocks_core.engine.SegmentationEngine` (then ``model``,
            ``checkpoint``, ``num_classes``, ``device``, ``precision``, ``block_size`` are
            taken from it); None builds one from those arguments after the bag has been
            checked and its first frame decoded.
        batch_size: frames per ``infer`` call (consecutive frames of the same size).
        max_frames: evaluate at most this many frames (None: all).
        max_drop: points of accuracy the recommended tau may lose vs dense.
        warmup: unmeasured ``infer`` calls per configuration on the first batch.
        max_delay_s: how long (recording time) an image waits for its label.
        max_pixels: largest accepted image (width * height).
        progress: draw a progress bar on stderr.

    Returns:
        The :class:`Report` (rows: dense, then one per tau in ascending order).

    Raises:
        BagError: missing path, not a bag, corrupt file, unknown topic, wrong message type.
        EvalError: unsupported encoding or undecodable frame, zero frames, a label that does
            not fit its image or the classes, bad arguments, checkpoint or device.
    """
    taus = sorted(set(float(t) for t in taus))
    if any(not math.isfinite(t) or t < 0 for t in taus):
        raise EvalError(f"taus must be finite numbers >= 0, got {taus}")
    if not taus:
        raise EvalError("give at least one tau")
    if batch_size < 1:
        raise EvalError(f"--batch-size must be >= 1, got {batch_size}")
    if not math.isfinite(max_drop) or max_drop < 0:
        raise EvalError(f"--max-drop must be a finite number >= 0, got {max_drop}")
    if max_frames is not None and max_frames < 0:
        raise EvalError(f"--max-frames must be >= 0, got {max_frames}")
    topics, listing = _check_topics(bag, image_topic, label_topic)
    images_in_bag = topics[image_topic].count
    if max_frames == 0:
        raise EvalError("zero frames to evaluate (--max-frames 0)")
    if images_in_bag == 0:
        raise EvalError(f"zero frames: image topic {image_topic!r} has no messages in {bag}; "
                        f"its topics: {listing}")
    total = images_in_bag if max_frames is None else min(images_in_bag, max_frames)

    stats = FrameStats()
    frames = read_frames(bag, image_topic, label_topic, stats, max_delay_s)
    make_engine = (lambda: engine) if engine is not None else (
        lambda: _make_engine(model, checkpoint, num_classes, device, precision, block_size))
    sweep = _Sweep(make_engine, [None, *taus], warmup, label_topic)
    bar = _Progress(total, progress)
    batch: list = []                  # (frame, rgb, label) of one size
    first_size = None
    with_label = evaluated = 0
    try:
        for frame in frames:
            index = evaluated + len(batch)
            if max_frames is not None and index >= max_frames:
                break
            try:
                rgb = decode(frame.image, max_pixels)
            except ImageDecodeError as exc:
                raise EvalError(f"frame {index} (stamp {frame.stamp_ns}) on {image_topic}: {exc}") from None
            label = frame.label
            if label is not None:
                if label.shape != rgb.shape[:2]:
                    raise EvalError(
                        f"label of frame {index} (stamp {frame.stamp_ns}) on {label_topic} is "
                        f"{label.shape[1]}x{label.shape[0]} but its image is {rgb.shape[1]}x{rgb.shape[0]}")
                with_label += 1
            if batch and (rgb.shape != batch[0][1].shape or len(batch) >= batch_size):
                evaluated += sweep.run(batch)
                batch = []
                bar.update(evaluated)
            first_size = first_size or rgb.shape
            batch.append((frame, rgb, label))
        if batch:
            evaluated += sweep.run(batch)
            bar.update(evaluated)
    finally:
        bar.close()
        frames.close()
    if evaluated == 0:
        raise EvalError(f"zero frames: no image on {image_topic!r} could be read from {bag}")

    height, width = first_size[0], first_size[1]
    complete = not (max_frames is not None and evaluated == max_frames and images_in_bag > evaluated)
    accounting = FrameAccounting(
        images_in_bag=images_in_bag,
        labels_in_bag=topics[label_topic].count if label_topic else None,
        evaluated=evaluated, with_label=with_label,
        images_without_label=(evaluated - with_label) if label_topic else 0,
        labels_without_image=stats.labels_without_image,
        not_evaluated=images_in_bag - evaluated, complete=complete)
    engine = sweep.engine
    rows = [acc.row(engine.class_names) for acc in sweep.rows.values()]
    dense = rows[0]
    # the mIoU of random weights vs labels is noise: choosing tau by it would be arbitrary
    random_weights = engine.checkpoint is None
    labelled = dense.miou is not None and math.isfinite(dense.miou)
    metric = "miou" if labelled and not random_weights else "agreement"
    for r in rows:
        value = r.miou if metric == "miou" else r.agreement_miou
        ref = dense.miou if metric == "miou" else dense.agreement_miou
        r.drop = ref - value
    import torch

    return Report(
        bag=str(bag), image_topic=image_topic, label_topic=label_topic,
        image_type=topics[image_topic].msgtype, width=int(width), height=int(height),
        model=engine.model_name, checkpoint=engine.checkpoint, device=str(engine.device),
        precision=engine.precision, block_size=engine.block_size, batch_size=batch_size,
        num_classes=engine.num_classes, class_names=list(engine.class_names), metric=metric,
        memory_kind=sweep.memory.kind, frames=accounting, rows=rows,
        recommendation=_recommend(rows, metric, max_drop, labels_ignored=labelled and random_weights),
        per_frame=sweep.per_frame,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), torch_version=torch.__version__)


def _recommend(rows: list, metric: str, max_drop: float, labels_ignored: bool = False) -> Recommendation:
    dense, taus = rows[0], rows[1:]
    what = "mIoU vs labels" if metric == "miou" else "agreement with the dense network"
    note = " (random weights: the labels are not used)" if labels_ignored else ""
    ok = [r for r in taus if r.drop <= max_drop + 1e-9]
    if not ok:
        best = min(taus, key=lambda r: r.drop)
        return Recommendation(
            tau=None, metric=metric, max_drop=max_drop, drop=None, gmacs_saving_percent=None,
            latency_change_percent=None,
            message=(f"no tau keeps the {what} drop within {max_drop:g} points (smallest drop: "
                     f"{best.drop:.2f} at tau {best.tau:g}){note}; run the dense network "
                     f"(adaptive: false) or try smaller taus"))
    r = max(ok, key=lambda r: r.tau)
    saving = 100.0 * (1.0 - r.gmacs_effective / dense.gmacs_effective)
    latency = 100.0 * (r.latency_ms_mean / dense.latency_ms_mean - 1.0)
    return Recommendation(
        tau=r.tau, metric=metric, max_drop=max_drop, drop=r.drop, gmacs_saving_percent=saving,
        latency_change_percent=latency,
        message=(f"recommended tau: {r.tau:g} (the largest tau whose {what} drop stays within "
                 f"{max_drop:g} points: drop {r.drop:.2f}{note}; {saving:.0f}% fewer effective "
                 f"GMACs, latency {latency:+.0f}% vs dense)"))


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------

_COLUMNS = (
    ("config", lambda r: r.name),
    ("frames", lambda r: f"{r.frames}"),
    ("high-res %", lambda r: f"{100 * r.highres_fraction:.1f}"),
    ("GMAC eff", lambda r: f"{r.gmacs_effective:.3f}"),
    ("GMAC exec", lambda r: f"{r.gmacs_executed:.3f}"),
    ("latency ms", lambda r: f"{r.latency_ms_mean:.1f}"),
    ("p50 ms", lambda r: f"{r.latency_ms_p50:.1f}"),
    ("p95 ms", lambda r: f"{r.latency_ms_p95:.1f}"),
    ("FPS", lambda r: f"{r.fps:.1f}"),
    ("peak MiB", lambda r: f"{r.peak_memory_mib:.0f}"),
    ("mIoU", lambda r: "-" if r.miou is None else f"{r.miou:.2f}"),
    ("pixel acc", lambda r: "-" if r.pixel_accuracy is None else f"{r.pixel_accuracy:.2f}"),
    ("agreement mIoU", lambda r: f"{r.agreement_miou:.2f}"),
    ("drop", lambda r: f"{r.drop:.2f}"),
)


def format_table(report: Report) -> str:
    """The rows as an aligned markdown table (one line per row, dense first)."""
    cells = [[name for name, _ in _COLUMNS]] + [[fmt(r) for _, fmt in _COLUMNS] for r in report.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(_COLUMNS))]
    lines = []
    for j, line in enumerate(cells):
        lines.append("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                        for i, (c, w) in enumerate(zip(line, widths))) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 1) + (":" if i else "-")
                                        for i, w in enumerate(widths)) + "|")
    return "\n".join(lines)


def _memory_note(kind: str) -> str:
    return {
        "cuda_max_memory_allocated": "torch.cuda.max_memory_allocated during the row's infer calls (GPU)",
        "cpu_process_peak_rss": "peak RSS of the whole process during the row's infer calls (CPU)",
        "cpu_process_max_rss": "peak RSS of the whole process over its lifetime (ru_maxrss, CPU)",
    }.get(kind, kind)


def _frames_summary(report: Report) -> list[str]:
    f = report.frames
    lines = [f"- frames evaluated: {f.evaluated} of {f.images_in_bag} images on `{report.image_topic}`"]
    if f.not_evaluated:
        lines.append(f"- not evaluated (--max-frames): {f.not_evaluated} images")
    if report.label_topic:
        lines.append(f"- labels on `{report.label_topic}`: {f.labels_in_bag} messages; frames with a "
                     f"label: {f.with_label}; images without a label: {f.images_without_label}; "
                     f"labels without an image: {f.labels_without_image}"
                     + ("" if f.complete else " (in the part of the bag read)"))
    return lines


def format_markdown(report: Report) -> str:
    """``report.md``."""
    metric = "mIoU vs labels" if report.metric == "miou" else "agreement mIoU vs dense"
    lines = [
        f"# SegBlocks tau sweep: `{report.bag}`", "",
        f"- images: `{report.image_topic}` ({report.image_type}, {report.width}x{report.height})",
        *_frames_summary(report),
        f"- model: {report.model}, weights: {report.weights}",
        f"- device: {report.device} ({report.precision}), block size {report.block_size}, "
        f"batch size {report.batch_size}, torch {report.torch_version}",
        f"- latency: engine total_ms per frame (preprocess + network + labels to host); "
        f"peak memory: {_memory_note(report.memory_kind)}",
        f"- drop: points of {metric} lost vs the dense row", "",
        format_table(report), "",
        f"**{report.recommendation.message}**", "",
    ]
    return "\n".join(lines)


def _plot(report: Report, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    label = "mIoU vs labels (%)" if report.metric == "miou" else "agreement mIoU vs dense (%)"
    value = (lambda r: r.miou) if report.metric == "miou" else (lambda r: r.agreement_miou)
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    dense, taus = report.rows[0], report.rows[1:]
    for ax, x, xlabel in ((fig.add_subplot(1, 2, 1), lambda r: r.gmacs_effective, "effective GMACs per frame"),
                          (fig.add_subplot(1, 2, 2), lambda r: r.latency_ms_mean, "mean latency (ms)")):
        ax.plot([x(r) for r in taus], [value(r) for r in taus], "o-", color="tab:blue", label="SegBlocks")
        for r in taus:
            ax.annotate(f"τ={r.tau:g}", (x(r), value(r)), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.plot([x(dense)], [value(dense)], "*", color="tab:red", markersize=14, label="dense")
        ax.annotate("dense", (x(dense), value(dense)), textcoords="offset points", xytext=(-10, 8),
                    fontsize=8, color="tab:red", ha="right")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.12, y=0.12)
        ax.legend(loc="best", fontsize=8)
    weights = "random weights" if report.checkpoint is None else Path(report.checkpoint).name
    fig.suptitle(f"{report.image_topic}: {report.frames.evaluated} frames, {report.model} ({weights}), "
                 f"{report.device}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)


def write_report(report: Report, out_dir) -> dict:
    """Write ``report.md``, ``tradeoff.png`` and ``report.json`` into ``out_dir``.

    Everything is written into a temporary folder inside ``out_dir`` first; an old
    ``report.json`` is removed before the new files are moved in, and the new
    ``report.json`` comes last, so it only ever sits beside the files it describes.

    Returns:
        ``{"json": path, "md": path, "png": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        (tmp / "report.md").write_text(format_markdown(report), encoding="utf-8")
        _plot(report, tmp / "tradeoff.png")
        (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n",
                                         encoding="utf-8")
        paths = {"json": out / "report.json", "md": out / "report.md", "png": out / "tradeoff.png"}
        paths["json"].unlink(missing_ok=True)
        os.replace(tmp / "report.md", paths["md"])
        os.replace(tmp / "tradeoff.png", paths["png"])
        os.replace(tmp / "report.json", paths["json"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------


def _taus_arg(text: str) -> list[float]:
    try:
        return parse_taus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Replay a rosbag2 recording through the SegBlocks engine for a "
        "sweep of tau and report accuracy, GMACs, latency and memory per tau.")
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or mcap), or its .db3/.mcap file")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--label-topic", default=None,
                   help="mono8 class-id label topic (255 = ignore), matched by header stamp")
    p.add_argument("--taus", type=_taus_arg, default=list(DEFAULT_TAUS),
                   help="comma-separated tau values (default: 0.1,0.2,0.3,0.5); the dense "
                   "network always runs as the baseline")
    p.add_argument("--model", default="swiftnet_rn18", help="swiftnet_rn18 | swiftnet_rn50")
    p.add_argument("--checkpoint", default="",
                   help="trained .pt file; empty: the shipped checkpoint if any, else random "
                   "weights; 'random': random weights (speed only)")
    p.add_argument("--num-classes", type=int, default=19, help="classes of the model (default 19)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--precision", default="fp32", help="fp32 | fp16 (GPU)")
    p.add_argument("--block-size", type=int, default=128, help="SegBlocks block side in pixels")
    p.add_argument("--batch-size", type=int, default=1, help="frames per inference call")
    p.add_argument("--max-frames", type=int, default=None, help="evaluate at most N frames")
    p.add_argument("--max-drop", type=float, default=1.0,
                   help="accuracy points the recommended tau may lose vs dense (default 1.0)")
    p.add_argument("--warmup", type=int, default=1,
                   help="unmeasured inference calls per configuration before measuring")
    p.add_argument("--max-label-delay", type=float, default=5.0,
                   help="seconds (recording time) an image waits for its label")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="folder for report.json, report.md, tradeoff.png")
    return p


class _OneLineFormatter(logging.Formatter):
    def format(self, record):
        return f"{PROG}: {record.levelname.lower()}: " + " ".join(record.getMessage().split())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``segblocks-eval-bag`` / ``ros2 run segblocks_ros eval_bag``; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    core_log = logging.getLogger("segblocks_core")
    core_log.addHandler(handler)
    try:
        try:
            import matplotlib  # noqa: F401 - fail before the long run, not after it
        except ImportError:
            raise EvalError("tradeoff.png needs matplotlib: pip install matplotlib") from None
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise EvalError(f"--out {str(out)!r} exists and is not a folder")
        report = evaluate_bag(
            args.bag, args.image_topic, args.label_topic, args.taus, model=args.model,
            checkpoint=args.checkpoint or None, num_classes=args.num_classes, device=args.device,
            precision=args.precision, block_size=args.block_size, batch_size=args.batch_size,
            max_frames=args.max_frames, max_drop=args.max_drop, warmup=max(args.warmup, 0),
            max_delay_s=args.max_label_delay,
            progress=not args.no_progress and sys.stderr.isatty())
        paths = write_report(report, out)
    except (BagError, EvalError, OSError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no report written", file=sys.stderr)
        return 130
    finally:
        core_log.removeHandler(handler)
    print(f"{report.image_topic}: {report.frames.evaluated} frames, {report.model} on "
          f"{report.device} ({report.precision}), weights: {report.weights}")
    for line in _frames_summary(report)[1:]:
        print(line[2:])
    print(format_table(report))
    print(report.recommendation.message)
    print(f"report: {paths['md']}, {paths['json']}, {paths['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
