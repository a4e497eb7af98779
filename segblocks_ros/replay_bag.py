"""``segblocks-replay-bag``: play a bag's camera topic into ROS 2, optionally timing the node.

    segblocks-replay-bag BAG --image-topic /camera/image_raw [--output-topic /image]
        [--rate 1.0] [--loop [N]] [--qos reliable|best_effort] [--qos-depth 10]
        [--record-stats latency.csv] [--stats-topic segmentation/stats]
        [--ros-args -r __ns:=/robot ...]

Publishes the ``sensor_msgs/Image`` or ``CompressedImage`` messages of one topic of a
rosbag2 recording (read with ``rosbags``, no rosbag2 needed) with their original header
stamps and frame ids, spaced as recorded: the gap between two messages is the gap between
their header stamps (the camera's capture times) divided by ``--rate``. A message whose
stamp is not later than the previous one is published right after it. On a full ROS
install ``ros2 bag play`` does the same for every topic (spaced by receive time).

Topic names: the output topic is the bag's topic unless ``--output-topic`` names another;
relative names resolve in the replayer's namespace, and standard ROS remapping
(``--ros-args -r /camera/image_raw:=/segblocks/image``) applies as well.

With ``--record-stats FILE`` the replayer also subscribes to the node's statistics
(``segmentation/stats``, ``diagnostic_msgs/DiagnosticArray``, whose header is the input
frame's header) and writes one row per published frame: the latency through ROS, i.e.
the time from publishing a frame to the arrival of its statistics (both read from this
process's monotonic clock; the node's header stamps are the recording's, so they cannot
be compared with the current time), next to the node's own ``total_ms`` and
``latency_ms``. A frame that the node dropped (it processes the newest frame only) or
whose statistics did not arrive within ``--stats-timeout`` gets an empty latency (the
node answers frames in order, so a frame still unanswered when a later one is answered
was dropped, and the replayer does not wait for it).
``.json`` files get JSON, anything else CSV. The file is written when the replay ends,
also after Ctrl-C (the way to stop ``--loop`` without a count).
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .bagfiles import COMPRESSED_TYPE, IMAGE_TYPE, BagError, list_topics, read_messages

__all__ = ["ReplayError", "FrameRecord", "ReplayResult", "replay_bag", "to_ros_message",
           "write_stats", "main", "STATS_COLUMNS"]

PROG = "segblocks-replay-bag"
NODE_NAME = "segblocks_replay_bag"
QOS_CHOICES = ("reliable", "best_effort")
#: columns of ``--record-stats`` CSV files (and keys of the JSON rows)
STATS_COLUMNS = (
    "loop", "index", "stamp_ns", "frame_id", "published_unix_s", "stats_received",
    "latency_ms", "node_latency_ms", "node_total_ms", "tau", "adaptive", "highres_fraction",
    "gmacs_effective",
)


class ReplayError(RuntimeError):
    """The replay cannot run as asked (the message says why, in one line)."""


@dataclass
class FrameRecord:
    """One published frame and, with stats recording, what the node said about it.

    Attributes:
        loop: pass over the bag (0-based).
        index: message index within the pass.
        stamp_ns, frame_id: the original header.
        published_unix_s: wall-clock time of publishing (``time.time()``).
        published_mono: ``time.monotonic()`` of publishing (latency reference).
        stats_received: the node's statistics for this frame arrived.
        latency_ms: publish -> statistics arrival, through ROS (None without statistics).
        node_latency_ms, node_total_ms, tau, adaptive, highres_fraction, gmacs_effective:
            the node's values from the statistics message.
    """

    loop: int
    index: int
    stamp_ns: int
    frame_id: str
    published_unix_s: float
    published_mono: float = field(repr=False, default=0.0)
    stats_received: bool = False
    latency_ms: Optional[float] = None
    node_latency_ms: Optional[float] = None
    node_total_ms: Optional[float] = None
    tau: Optional[float] = None
    adaptive: Optional[bool] = None
    highres_fraction: Optional[float] = None
    gmacs_effective: Optional[float] = None

    def as_row(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in STATS_COLUMNS}


@dataclass
class ReplayResult:
    """What :func:`replay_bag` did.

    Attributes:
        topic: the resolved output topic.
        msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        frames: one record per published message, in publishing order.
        loops: passes completed (a pass cut short by a stop counts too).
        interrupted: stopped early (Ctrl-C or ``stop``).
        stats_unmatched: statistics messages whose stamp matched no pending frame.
        stats_before_start: statistics messages that arrived before the first frame was
            published (the node's kept history, or answers to another source's frames).
        duration_s: from the first publish to the last.
    """

    topic: str
    msgtype: str
    frames: list = field(default_factory=list)
    loops: int = 0
    interrupted: bool = False
    stats_unmatched: int = 0
    stats_before_start: int = 0
    duration_s: float = 0.0

    @property
    def published(self) -> int:
        return len(self.frames)

    def latencies_ms(self) -> np.ndarray:
        return np.array([f.latency_ms for f in self.frames if f.latency_ms is not None], np.float64)

    def summary(self) -> dict:
        lat = self.latencies_ms()
        out = {"published": self.published, "loops": self.loops, "interrupted": self.interrupted,
               "duration_s": self.duration_s,
               "stats_received": int(sum(f.stats_received for f in self.frames)),
               "stats_unmatched": self.stats_unmatched,
               "stats_before_start": self.stats_before_start}
        if lat.size:
            out.update(latency_ms_mean=float(lat.mean()), latency_ms_p50=float(np.percentile(lat, 50)),
                       latency_ms_p95=float(np.percentile(lat, 95)), latency_ms_max=float(lat.max()))
        return out


def to_ros_message(msg):
    """A ``rosbags``-deserialised ``Image``/``CompressedImage`` -> the rclpy message, with
    the same header (stamp, frame_id) and payload."""
    from sensor_msgs.msg import CompressedImage, Image

    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        out = CompressedImage()
        out.format = str(msg.format)
    else:
        out = Image()
        out.height, out.width, out.step = int(msg.height), int(msg.width), int(msg.step)
        out.encoding = str(msg.encoding)
        out.is_bigendian = int(msg.is_bigendian)
    # bytes are taken over by one memcpy; a numpy array would go element by element
    out.data = np.ascontiguousarray(msg.data, np.uint8).tobytes()
    out.header.frame_id = str(msg.header.frame_id)
    out.header.stamp.sec = int(msg.header.stamp.sec)
    out.header.stamp.nanosec = int(msg.header.stamp.nanosec)
    return out


def _qos(reliability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in QOS_CHOICES:
        raise ReplayError(f"qos must be one of {', '.join(QOS_CHOICES)}, got {reliability!r}")
    if depth < 1:
        raise ReplayError(f"qos depth must be >= 1, got {depth}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=(ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=DurabilityPolicy.VOLATILE)


def _stats_values(msg) -> dict:
    values = {}
    for status in msg.status:
        for kv in status.values:
            values.setdefault(kv.key, kv.value)
    return values


def _float(values: dict, key: str) -> Optional[float]:
    try:
        return float(values[key])
    except (KeyError, ValueError):
        return None


class _StatsMatcher:
    """Matches statistics messages to the frames published with the same header stamp.

    The node answers frames in the order they arrive and drops, never reorders, the ones it
    cannot keep up with. So once a frame is answered, every frame published before it that
    is still waiting will never be answered: it stops being outstanding (its latency stays
    empty) and the replayer does not wait for it at the end.

    Messages that arrive before the first frame is published cannot answer it: they are
    counted apart (``before_start``), e.g. the history a transient-local publisher hands a
    new subscriber. Should that history arrive only after the first publish (its writer
    matched this subscription late), a message with the stamp of a pending frame from an
    earlier replay of the same bag would be taken as its answer; with the node's history of
    5 this needs a bag whose first and last few frames share stamps.
    """

    def __init__(self):
        self._lock = threading.Condition()
        self._pending: dict = collections.OrderedDict()     # (stamp, frame_id, seq) -> record
        self._seq = 0
        self.unmatched = 0
        self.before_start = 0

    @property
    def outstanding(self) -> int:
        with self._lock:
            return len(self._pending)

    def published(self, record: FrameRecord) -> None:
        with self._lock:
            self._pending[(record.stamp_ns, record.frame_id, self._seq)] = record
            self._seq += 1

    def __call__(self, msg) -> None:
        arrival = time.monotonic()
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        frame_id = str(msg.header.frame_id)
        values = _stats_values(msg)
        with self._lock:
            if self._seq == 0:
                self.before_start += 1
                return
            # with --loop a stamp comes again: the oldest waiting publish is the one answered
            key = next((k for k in self._pending if k[0] == stamp and k[1] == frame_id), None)
            if key is None:
                self.unmatched += 1
                return
            record = self._pending.pop(key)
            for older in [k for k in self._pending if k[2] < key[2]]:
                del self._pending[older]
            self._lock.notify_all()
        record.stats_received = True
        record.latency_ms = (arrival - record.published_mono) * 1e3
        record.node_latency_ms = _float(values, "latency_ms")
        record.node_total_ms = _float(values, "total_ms")
        record.tau = _float(values, "tau")
        record.highres_fraction = _float(values, "highres_fraction")
        record.gmacs_effective = _float(values, "gmacs_effective")
        if "adaptive" in values:
            record.adaptive = values["adaptive"].strip().lower() == "true"

    def wait_all(self, timeout: float, stop: Callable[[], bool]) -> None:
        """Wait until no frame is outstanding, ``timeout`` passed or ``stop()``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and not stop():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._lock.wait(min(remaining, 0.1))


def _subscribe_stats(node, topic: str, callback, wait_s: float, halted: Callable[[], bool],
                     log: Callable[[str], None]):
    """Subscribe to the node's statistics with the durability its publishers offer.

    A subscription and a publisher match on each side independently: seeing the publisher
    here does not mean it already sends to this subscription, and a volatile publisher
    drops what it sends before. The node's statistics are transient local, so subscribing
    transient local too gets the answers sent before that side matched. Volatile publishers
    (another node) get a volatile subscription, which any publisher matches.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import DurabilityPolicy

    name = node.resolve_topic_name(topic)
    if wait_s > 0 and not _wait(lambda: node.count_publishers(name) > 0, wait_s, halted):
        log(f"{PROG}: warning: nothing publishes {name}; latencies will be empty")
    offered = [info.qos_profile.durability for info in node.get_publishers_info_by_topic(name)]
    qos = _qos("reliable", 1000)
    if offered and all(d == DurabilityPolicy.TRANSIENT_LOCAL for d in offered):
        qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
    sub = node.create_subscription(DiagnosticArray, name, callback, qos)
    if offered and wait_s > 0 and not _wait(lambda: sub.get_publisher_count() > 0, wait_s, halted):
        log(f"{PROG}: warning: {name} is published but did not match this subscription "
            f"within {wait_s:g} s; early latencies may be empty")
    return sub


def _wait(predicate: Callable[[], bool], timeout: float, stop: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if stop() or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def replay_bag(bag, image_topic: str, output_topic: Optional[str] = None, rate: float = 1.0,
               loops: Optional[int] = 1, qos: str = "reliable", qos_depth: int = 10,
               record_stats: bool = False, stats_topic: str = "segmentation/stats",
               wait_for_subscriber_s: float = 5.0, stats_timeout_s: float = 5.0,
               ack_timeout_s: float = 5.0, context=None, ros_args: Optional[Sequence[str]] = None,
               stop: Optional[threading.Event] = None,
               log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> ReplayResult:
    """Publish the images of ``image_topic`` with their recorded timing.

    Args:
        bag: rosbag2 directory (or its ``.db3``/``.mcap`` file).
        image_topic: the bag's ``Image`` or ``CompressedImage`` topic.
        output_topic: topic to publish on (default: ``image_topic``).
        rate: playback speed factor (2.0 = twice as fast).
        loops: passes over the bag; None repeats until ``stop`` is set (or Ctrl-C).
        qos: ``reliable`` (matches reliable and best-effort subscribers) or ``best_effort``.
        qos_depth: publisher history depth (keep last).
        record_stats: subscribe to ``stats_topic`` and fill in the latency of every frame.
        stats_topic: the node's statistics topic.
        wait_for_subscriber_s: wait this long for a subscriber to the output topic (and a
            publisher of ``stats_topic``) before playing; play anyway afterwards.
        stats_timeout_s: after the last frame, wait this long for outstanding statistics.
        ack_timeout_s: with reliable QoS, wait this long at the end for the subscribers to
            acknowledge every frame (``ros2 bag play --wait-for-all-acked``).
        context: an initialised rclpy context to use (None: a private one is created and
            shut down, with ``ros_args`` as its command line).
        ros_args: ``--ros-args ...`` arguments for a private context.
        stop: set it to end the replay early (from another thread).
        log: where progress and warnings go (one line each).

    Returns:
        The :class:`ReplayResult` with one :class:`FrameRecord` per published frame.

    Raises:
        BagError: missing path, not a bag, corrupt file, unknown topic, wrong message type.
        ReplayError: zero messages on the topic, bad rate, loops or QoS.
    """
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image

    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ReplayError(f"rate must be a positive number, got {rate!r}")
    if loops is not None and loops < 1:
        raise ReplayError(f"loops must be >= 1 (or None: until stopped), got {loops}")
    topics = list_topics(bag)
    if image_topic not in topics:
        listing = ", ".join(f"{t} ({i.msgtype}, {i.count} msgs)" for t, i in sorted(topics.items())) or "none"
        raise BagError(f"image topic {image_topic!r} is not in {bag}; its topics: {listing}")
    msgtype = topics[image_topic].msgtype
    if msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
        raise BagError(f"image topic {image_topic!r} carries {msgtype}, expected {IMAGE_TYPE} "
                       f"or {COMPRESSED_TYPE}")
    if topics[image_topic].count == 0:
        raise ReplayError(f"zero frames: topic {image_topic!r} has no messages in {bag}")
    profile = _qos(qos, qos_depth)
    stop = stop or threading.Event()

    own_context = context is None
    if own_context:
        context = rclpy.Context()
        rclpy.init(args=[PROG, *(ros_args or [])], context=context,
                   signal_handler_options=SignalHandlerOptions.NO)
    node = executor = thread = None
    result = ReplayResult(topic="", msgtype=msgtype)
    matcher = _StatsMatcher()
    try:
        node = Node(NODE_NAME, context=context)
        pub = node.create_publisher(Image if msgtype == IMAGE_TYPE else CompressedImage,
                                    output_topic or image_topic, profile)
        result.topic = pub.topic_name
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, name="replay_executor", daemon=True)
        thread.start()

        halted = lambda: stop.is_set() or not context.ok()  # noqa: E731
        if wait_for_subscriber_s > 0:
            if not _wait(lambda: pub.get_subscription_count() > 0, wait_for_subscriber_s, halted):
                log(f"{PROG}: warning: no subscriber on {pub.topic_name} after "
                    f"{wait_for_subscriber_s:g} s; playing anyway")
        if record_stats:
            _subscribe_stats(node, stats_topic, matcher, wait_for_subscriber_s, halted, log)
        first_publish = last_publish = None
        loop = 0
        while (loops is None or loop < loops) and not halted():
            start_mono = start_stamp = prev_target = None
            for index, (_, stamp, frame_id, raw) in enumerate(read_messages(bag, [image_topic])):
                if halted():
                    break
                msg = to_ros_message(raw)      # before waiting: publishing stays on time
                now = time.monotonic()
                if start_mono is None:
                    start_mono, start_stamp, target = now, stamp, now
                else:
                    target = start_mono + (stamp - start_stamp) / 1e9 / rate
                    # stamps that go backwards do not hold the replay up
                    target = max(target, prev_target)
                prev_target = target
                while not halted():
                    remaining = target - time.monotonic()
                    if remaining <= 0:
                        break
                    time.sleep(min(remaining, 0.05))
                if halted():
                    break
                record = FrameRecord(loop=loop, index=index, stamp_ns=stamp, frame_id=frame_id,
                                     published_unix_s=time.time(), published_mono=time.monotonic())
                if record_stats:
                    matcher.published(record)
                pub.publish(msg)
                last_publish = record.published_mono
                first_publish = first_publish if first_publish is not None else last_publish
                result.frames.append(record)
            loop += 1
            result.loops = loop
        # a reliable subscriber must have every frame before the publisher goes away
        if result.frames and not pub.wait_for_all_acked(Duration(seconds=ack_timeout_s)):
            log(f"{PROG}: warning: not every frame was acknowledged by the subscribers of "
                f"{pub.topic_name} within {ack_timeout_s:g} s")
        if record_stats and not halted():
            matcher.wait_all(stats_timeout_s, halted)
        result.interrupted = halted()
        if first_publish is not None:
            result.duration_s = last_publish - first_publish
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.stats_unmatched = matcher.unmatched
        result.stats_before_start = matcher.before_start
        if executor is not None:
            executor.shutdown()
        if thread is not None:
            thread.join(timeout=5.0)
        if node is not None:
            node.destroy_node()
        if own_context and context.ok():
            rclpy.shutdown(context=context)
    return result


def write_stats(result: ReplayResult, path, fmt: Optional[str] = None, meta: Optional[dict] = None) -> Path:
    """Write the per-frame latency rows (CSV, or JSON for ``.json``/``fmt="json"``),
    atomically (a temporary file renamed into place)."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "csv")
    rows = [f.as_row() for f in result.frames]
    if fmt == "json":
        doc = {**(meta or {}), "topic": result.topic, "msgtype": result.msgtype,
               "summary": result.summary(), "frames": rows}
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(STATS_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
        text = buf.getvalue()
    else:
        raise ReplayError(f"stats format must be csv or json, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Publish a rosbag2 camera topic in ROS 2 with the recorded timing "
        "(no rosbag2 needed); optionally record the SegBlocks node's per-frame latency.",
        epilog="ROS arguments go after --ros-args (e.g. --ros-args -r __ns:=/robot).")
    p.add_argument("bag", help="rosbag2 directory (sqlite3 or mcap), or its .db3/.mcap file")
    p.add_argument("--image-topic", required=True, help="the bag's Image or CompressedImage topic")
    p.add_argument("--output-topic", default=None,
                   help="publish on this topic instead of the bag's (relative names resolve "
                   "in the replayer's namespace)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    p.add_argument("--loop", nargs="?", type=int, const=0, default=1, metavar="N",
                   help="play the bag N times; without N: until Ctrl-C")
    p.add_argument("--qos", choices=QOS_CHOICES, default="reliable",
                   help="publisher reliability (reliable also reaches best-effort subscribers)")
    p.add_argument("--qos-depth", type=int, default=10, help="publisher history depth (keep last)")
    p.add_argument("--record-stats", default=None, metavar="FILE",
                   help="write per-frame latency (publish -> node stats arrival) as CSV, or JSON "
                   "for .json")
    p.add_argument("--stats-topic", default="segmentation/stats",
                   help="the node's statistics topic (default: segmentation/stats)")
    p.add_argument("--stats-format", choices=("csv", "json"), default=None,
                   help="format of --record-stats (default: from the file name)")
    p.add_argument("--wait-for-subscriber", type=float, default=5.0, metavar="SECONDS",
                   help="wait this long for a subscriber before playing (default 5)")
    p.add_argument("--stats-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="after the last frame, wait this long for outstanding stats (default 5)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``segblocks-replay-bag`` / ``ros2 run segblocks_ros replay_bag``; returns the exit status."""
    from rclpy.utilities import remove_ros_args

    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    args = _parser().parse_args(remove_ros_args([PROG, *argv])[1:])
    loops = None if args.loop == 0 else args.loop
    try:
        if args.loop < 0:
            raise ReplayError(f"--loop must be >= 0, got {args.loop}")
        result = replay_bag(
            args.bag, args.image_topic, args.output_topic, rate=args.rate, loops=loops,
            qos=args.qos, qos_depth=args.qos_depth, record_stats=args.record_stats is not None,
            stats_topic=args.stats_topic, wait_for_subscriber_s=args.wait_for_subscriber,
            stats_timeout_s=args.stats_timeout, ros_args=ros_args)
        if args.record_stats is not None:
            write_stats(result, args.record_stats, args.stats_format,
                        meta={"bag": str(args.bag), "rate": args.rate})
    except (BagError, ReplayError, OSError) as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    s = result.summary()
    line = (f"published {s['published']} frames on {result.topic} in {s['duration_s']:.2f} s "
            f"({s['loops']} pass{'es' if s['loops'] != 1 else ''}"
            f"{', interrupted' if s['interrupted'] else ''})")
    print(line)
    if args.record_stats is not None:
        missing = s["published"] - s["stats_received"]
        msg = f"stats for {s['stats_received']} frames ({missing} without: dropped by the node or lost)"
        if "latency_ms_mean" in s:
            msg += (f"; latency through ROS mean {s['latency_ms_mean']:.1f} ms, p50 "
                    f"{s['latency_ms_p50']:.1f} ms, p95 {s['latency_ms_p95']:.1f} ms")
        print(msg)
        print(f"written: {args.record_stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
