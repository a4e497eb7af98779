"""rosbag2 recordings of camera images (and class labels) with ``rosbags``, no ROS install.

Writing: :func:`encode_rgb` packs an RGB array into any raw ``sensor_msgs/Image``
encoding the node accepts; :class:`ImageBagWriter` writes image (``Image`` or
``CompressedImage``) and mono8 label topics in either storage format (``sqlite3`` or
``mcap``); :func:`write_synthetic_bag` records a moving-camera synthetic street scene
(:mod:`segblocks_core.data.scenes`) with matching labels.

Reading: :func:`list_topics`, :func:`read_messages` (topic, header stamp, frame_id,
deserialised message) and :func:`read_frames`, which pairs every image with the label of
the same header stamp and says which ones found none. Decoding image messages to RGB is
:mod:`segblocks_ros.image_codec`'s job (it accepts the messages yielded here);
:func:`label_array` turns a mono8 label message into an array.

Every failure a user can cause (missing path, not a bag, corrupt file, unknown topic,
wrong message type) raises :class:`BagError` with one clear line.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

__all__ = [
    "BagError", "ENCODINGS", "IMAGE_TYPE", "COMPRESSED_TYPE", "encode_rgb", "encode_compressed",
    "ImageBagWriter", "write_synthetic_bag", "BagInfo", "TopicInfo", "list_topics",
    "read_messages", "read_frames", "Frame", "FrameStats", "label_array", "stamp_ns",
]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
STORAGES = ("sqlite3", "mcap")

#: raw encodings :func:`encode_rgb` writes (those of ``segblocks_ros.image_codec``)
ENCODINGS: tuple[str, ...] = (
    "rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "uyvy", "yuv422_yuy2", "yuyv",
    "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
)
_UYVY = ("yuv422", "uyvy")
_YUYV = ("yuv422_yuy2", "yuyv")


class BagError(RuntimeError):
    """A bag that cannot be written or read as asked (the message says why)."""


def _rosbags():
    try:
        from rosbags.rosbag2 import Reader, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError as exc:
        raise ImportError("reading and writing bags needs rosbags: pip install 'rosbags>=0.10'") from exc
    return Reader, Writer, Stores, get_typestore


_TYPESTORE = None


def _typestore():
    global _TYPESTORE
    if _TYPESTORE is None:
        _, _, Stores, get_typestore = _rosbags()
        # sensor_msgs/Image and CompressedImage are identical in every ROS 2 distribution
        _TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
    return _TYPESTORE


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------


def _check_rgb(rgb) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 array [H, W, 3], got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"empty image {rgb.shape}")
    return rgb


def _ycbcr601(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited ("video") range Y'CbCr, float ``[H, W, 3]`` (Y in 16..235, Cb/Cr in
    16..240), the inverse of what OpenCV's ``COLOR_YUV2RGB_UYVY`` decodes."""
    r, g, b = (rgb[..., i].astype(np.float32) * np.float32(1 / 255) for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
    return np.stack([y, cb, cr], -1)


def encode_rgb(rgb: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """Pack an RGB image into the bytes of a ``sensor_msgs/Image`` with ``encoding``.

    * ``rgb8``/``bgr8``/``rgba8``/``bgra8``: channel order, alpha 255;
    * ``mono8``: luma ``0.299 R + 0.587 G + 0.114 B`` (BT.601 weights, full range);
    * ``yuv422``/``uyvy`` (bytes ``U Y0 V Y1``) and ``yuv422_yuy2``/``yuyv``
      (``Y0 U Y1 V``): BT.601 limited range, chroma averaged over each pixel pair (width
      must be even);
    * ``bayer_<pattern>8``: the mosaic samples of the RGB image, ``pattern`` naming the
      top-left 2x2 tile in reading order.

    Args:
        rgb (np.ndarray[H, W, 3] uint8): the image.
        encoding: one of :data:`ENCODINGS`.

    Returns:
        ``(data, step)``: the row-major bytes without row padding and the row length.
    """
    rgb = _check_rgb(rgb)
    enc = encoding.strip().lower() if isinstance(encoding, str) else encoding
    h, w, _ = rgb.shape
    if enc == "rgb8":
        out = np.ascontiguousarray(rgb)
    elif enc == "bgr8":
        out = np.ascontiguousarray(rgb[..., ::-1])
    elif enc in ("rgba8", "bgra8"):
        out = np.empty((h, w, 4), np.uint8)
        out[..., :3] = rgb if enc == "rgba8" else rgb[..., ::-1]
        out[..., 3] = 255
    elif enc == "mono8":
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        out = np.clip(np.rint(luma), 0, 255).astype(np.uint8)
    elif enc in _UYVY or enc in _YUYV:
        if w % 2:
            raise ValueError(f"{enc} needs an even width, got {w}")
        ycc = _ycbcr601(rgb)
        y = ycc[..., 0]
        cb = 0.5 * (ycc[:, 0::2, 1] + ycc[:, 1::2, 1])
        cr = 0.5 * (ycc[:, 0::2, 2] + ycc[:, 1::2, 2])
        planes = (cb, y[:, 0::2], cr, y[:, 1::2]) if enc in _UYVY else (y[:, 0::2], cb, y[:, 1::2], cr)
        quads = np.stack(planes, -1)
        out = np.clip(np.rint(quads), 0, 255).astype(np.uint8).reshape(h, 2 * w)
    elif enc in ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8"):
        pattern = enc[6:10]
        out = np.empty((h, w), np.uint8)
        for k, colour in enumerate(pattern):
            r, c = divmod(k, 2)
            out[r::2, c::2] = rgb[r::2, c::2, "rgb".index(colour)]
    else:
        raise ValueError(f"unsupported encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
    step = out.nbytes // h
    return out.tobytes(), step


def encode_compressed(rgb: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """JPEG or PNG bytes of an RGB image (Pillow)."""
    rgb = _check_rgb(rgb)
    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    from PIL import Image as PILImage

    buf = io.BytesIO()
    if fmt == "jpeg":
        PILImage.fromarray(rgb).save(buf, format="JPEG", quality=int(quality))
    else:
        PILImage.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def stamp_ns(header) -> int:
    """Header stamp of a message as integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------


class ImageBagWriter:
    """Write image and label topics into a new rosbag2 (use as a context manager).

    Args:
        path: bag directory to create (must not exist unless ``overwrite``).
        storage: ``sqlite3`` or ``mcap``.
        overwrite: replace an existing bag directory at ``path``.
    """

    def __init__(self, path, storage: str = "sqlite3", overwrite: bool = False):
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        if self.path.exists():
            if not overwrite:
                raise BagError(f"{self.path} exists already; choose a new path or pass overwrite")
            if self.path.is_dir() and ((self.path / "metadata.yaml").exists() or not any(self.path.iterdir())):
                shutil.rmtree(self.path)
            else:
                raise BagError(f"{self.path} exists and is not a bag directory; not overwriting it")
        self.storage = storage
        self._writer = None
        self._conns: dict[str, object] = {}
        self._types: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "ImageBagWriter":
        _, Writer, _, _ = _rosbags()
        from rosbags.rosbag2 import StoragePlugin

        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        try:
            self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        except TypeError:            # rosbags < 0.11 has no version argument
            self._writer = Writer(self.path, storage_plugin=plugin)
        self._writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        if exc_type is None:
            writer.close()
            return
        # a failed recording must not look like a finished bag
        try:
            abort = getattr(writer, "abort", None)
            abort() if abort is not None else writer.close()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def _connection(self, topic: str, msgtype: str):
        if self._writer is None:
            raise BagError("the writer is not open; use it as a context manager")
        if topic in self._conns:
            if self._types[topic] != msgtype:
                raise BagError(f"topic {topic} already carries {self._types[topic]}, not {msgtype}")
            return self._conns[topic]
        conn = self._writer.add_connection(topic, msgtype, typestore=_typestore())
        self._conns[topic], self._types[topic], self.counts[topic] = conn, msgtype, 0
        return conn

    def _header(self, stamp: int, frame_id: str):
        ts = _typestore()
        Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
        return Header(stamp=Time(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)),
                      frame_id=frame_id)

    def _write(self, topic: str, msgtype: str, msg, log_time_ns: int) -> None:
        conn = self._connection(topic, msgtype)
        self._writer.write(conn, int(log_time_ns), _typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def write_image(self, topic: str, rgb: np.ndarray, stamp: int, frame_id: str = "camera",
                    encoding: str = "rgb8", log_time_ns: Optional[int] = None) -> None:
        """Write ``rgb`` as a ``sensor_msgs/Image`` in ``encoding`` with header ``stamp`` (ns)."""
        data, step = encode_rgb(rgb, encoding)
        self.write_raw(topic, np.frombuffer(data, np.uint8), rgb.shape[0], rgb.shape[1], encoding.strip().lower(),
                       step, stamp, frame_id, log_time_ns)

    def write_raw(self, topic: str, data: np.ndarray, height: int, width: int, encoding: str, step: int,
                  stamp: int, frame_id: str = "camera", log_time_ns: Optional[int] = None) -> None:
        """Write an already encoded ``sensor_msgs/Image``."""
        Image = _typestore().types[IMAGE_TYPE]
        msg = Image(header=self._header(stamp, frame_id), height=int(height), width=int(width),
                    encoding=encoding, is_bigendian=0, step=int(step),
                    data=np.ascontiguousarray(data, np.uint8).reshape(-1))
        self._write(topic, IMAGE_TYPE, msg, stamp if log_time_ns is None else log_time_ns)

    def write_compressed(self, topic: str, rgb: np.ndarray, stamp: int, fmt: str = "jpeg",
                         frame_id: str = "camera", quality: int = 90,
                         log_time_ns: Optional[int] = None) -> None:
        """Write ``rgb`` as a ``sensor_msgs/CompressedImage`` (format field ``jpeg``/``png``)."""
        data = encode_compressed(rgb, fmt, quality)
        Compressed = _typestore().types[COMPRESSED_TYPE]
        msg = Compressed(header=self._header(stamp, frame_id), format=fmt.lower(),
                         data=np.frombuffer(data, np.uint8))
        self._write(topic, COMPRESSED_TYPE, msg, stamp if log_time_ns is None else log_time_ns)

    def write_label(self, topic: str, label: np.ndarray, stamp: int, frame_id: str = "camera",
                    log_time_ns: Optional[int] = None) -> None:
        """Write class ids ``[H, W]`` uint8 (255 = ignore) as a mono8 ``sensor_msgs/Image``."""
        label = np.asarray(label)
        if label.dtype != np.uint8 or label.ndim != 2:
            raise ValueError(f"labels must be uint8 [H, W], got {label.dtype} {label.shape}")
        self.write_raw(topic, label, label.shape[0], label.shape[1], "mono8", label.shape[1], stamp,
                       frame_id, log_time_ns)


@dataclass
class BagInfo:
    """What :func:`write_synthetic_bag` wrote."""

    path: str
    storage: str
    frames: int
    topics: dict
    stamps: list = field(repr=False, default_factory=list)


DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000


def write_synthetic_bag(path, num_frames: int, height: int, width: int, seed: int = 0,
                        storage: str = "sqlite3", image_topic: str = "/camera/image_raw",
                        label_topic: Optional[str] = "/camera/labels", encoding: str = "rgb8",
                        compressed: Optional[str] = None, rate_hz: float = 10.0, speed: float = 1.0,
                        frame_id: str = "camera", start_ns: int = DEFAULT_START_NS,
                        overwrite: bool = False) -> BagInfo:
    """Record a synthetic drive: one street scene seen by a camera moving forward.

    Args:
        path: bag directory to create.
        num_frames: frames to write (>= 1).
        height, width: image size.
        seed: scene seed (:func:`segblocks_core.data.scenes.render_scene`).
        storage: ``sqlite3`` or ``mcap``.
        image_topic: topic of the camera images.
        label_topic: topic of the mono8 class-id labels (same header stamps), or None.
        encoding: raw image encoding (see :func:`encode_rgb`); ignored when ``compressed``.
        compressed: None for ``sensor_msgs/Image``, ``"jpeg"`` or ``"png"`` for
            ``sensor_msgs/CompressedImage``.
        rate_hz: frame rate; header stamps are ``start_ns + i * 1e9 / rate_hz``.
        speed: metres driven per frame.
        frame_id: header frame id.
        start_ns: stamp of the first frame.
        overwrite: replace an existing bag at ``path``.

    Returns:
        :class:`BagInfo` with the topics written and the stamps.
    """
    from segblocks_core.data.scenes import render_sequence

    if isinstance(num_frames, bool) or int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    if compressed is None:
        encode_rgb(np.zeros((2, 2, 3), np.uint8), encoding)         # fail before writing anything
    elif compressed not in ("jpeg", "png"):
        raise ValueError(f"compressed must be None, 'jpeg' or 'png', got {compressed!r}")
    if label_topic is not None and label_topic == image_topic:
        raise ValueError("image_topic and label_topic must differ")
    period = 1e9 / rate_hz
    stamps = []
    with ImageBagWriter(path, storage, overwrite) as writer:
        for i, scene in enumerate(render_sequence(seed, int(num_frames), height, width, speed=speed)):
            stamp = int(start_ns + round(i * period))
            if compressed:
                writer.write_compressed(image_topic, scene.image, stamp, compressed, frame_id)
            else:
                writer.write_image(image_topic, scene.image, stamp, frame_id, encoding)
            if label_topic is not None:
                writer.write_label(label_topic, scene.label, stamp, frame_id)
            stamps.append(stamp)
        topics = dict(writer._types)
    return BagInfo(path=str(path), storage=storage, frames=len(stamps), topics=topics, stamps=stamps)


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicInfo:
    msgtype: Optional[str]
    count: int


def _open_reader(path):
    Reader, _, _, _ = _rosbags()
    from rosbags.rosbag2 import ReaderError

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {str(p)!r} does not exist")
    if p.is_dir() and not (p / "metadata.yaml").exists():
        raise BagError(f"{str(p)!r} is not a rosbag2 directory (no metadata.yaml)")
    if p.is_file() and p.suffix not in (".db3", ".mcap"):
        raise BagError(f"{str(p)!r} is not a rosbag2 bag (a directory, .db3 or .mcap file)")
    try:
        reader = Reader(p)
        reader.open()
    except (ReaderError, OSError, ValueError, KeyError) as exc:
        raise BagError(f"cannot open bag {str(p)!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - sqlite3/mcap/yaml raise their own types
        raise BagError(f"cannot open bag {str(p)!r} (corrupt?): {type(exc).__name__}: {exc}") from exc
    return reader


def list_topics(path) -> dict[str, TopicInfo]:
    """``{topic: TopicInfo(msgtype, count)}`` of a bag (directory, .db3 or .mcap)."""
    reader = _open_reader(path)
    try:
        return {name: TopicInfo(info.msgtype, int(info.msgcount)) for name, info in reader.topics.items()}
    finally:
        reader.close()


def _describe(topics: dict[str, TopicInfo]) -> str:
    return ", ".join(f"{t} ({i.msgtype}, {i.count})" for t, i in sorted(topics.items())) or "none"


def read_messages(path, topics: Optional[Sequence[str]] = None,
                  msgtypes: Optional[dict] = None) -> Iterator[tuple[str, int, str, object]]:
    """Iterate ``(topic, header stamp ns, frame_id, message)`` in recording order.

    Messages are deserialised with the ROS 2 typestore (their ``data`` fields are numpy
    views, no copies); messages without a header get the recording time and ``""``.

    Args:
        path: the bag.
        topics: topics to read (all if None); unknown topics raise :class:`BagError`
            listing the bag's topics.
        msgtypes: optional ``{topic: allowed type or tuple of types}``; another type raises.
    """
    reader = _open_reader(path)
    try:
        existing = {name: TopicInfo(info.msgtype, int(info.msgcount)) for name, info in reader.topics.items()}
        wanted = list(existing) if topics is None else list(topics)
        for topic in wanted:
            if topic not in existing:
                raise BagError(f"topic {topic!r} is not in {path}; its topics: {_describe(existing)}")
            allowed = (msgtypes or {}).get(topic)
            if allowed is not None:
                allowed = (allowed,) if isinstance(allowed, str) else tuple(allowed)
                if existing[topic].msgtype not in allowed:
                    raise BagError(f"topic {topic!r} carries {existing[topic].msgtype}, expected "
                                   f"{' or '.join(allowed)}")
        conns = [c for c in reader.connections if c.topic in set(wanted)]
        ts = _typestore()
        try:
            for conn, log_time, raw in reader.messages(connections=conns):
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                except Exception as exc:  # noqa: BLE001
                    raise BagError(f"cannot deserialise a {conn.msgtype} message on {conn.topic} "
                                   f"at {log_time}: {exc}") from exc
                header = getattr(msg, "header", None)
                if header is not None:
                    yield conn.topic, stamp_ns(header), header.frame_id, msg
                else:
                    yield conn.topic, int(log_time), "", msg
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001 - corrupt storage surfaces here
            raise BagError(f"cannot read bag {str(path)!r} (corrupt?): {type(exc).__name__}: {exc}") from exc
    finally:
        reader.close()


def label_array(msg) -> np.ndarray:
    """mono8 (or 8UC1) label ``sensor_msgs/Image`` -> class ids ``[H, W]`` uint8 (a view)."""
    enc = str(msg.encoding).strip().lower()
    if enc not in ("mono8", "8uc1"):
        raise BagError(f"label images must be mono8, got encoding {msg.encoding!r}")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if h < 1 or w < 1 or step < w or data.size != step * h:
        raise BagError(f"label image {w}x{h} with step {step} does not match its {data.size} bytes")
    return data.reshape(h, step)[:, :w]


@dataclass
class Frame:
    """One camera frame of a bag and its label.

    Attributes:
        stamp_ns: header stamp.
        frame_id: header frame id.
        image: the deserialised ``Image`` or ``CompressedImage`` message.
        label (np.ndarray[H, W] uint8 or None): class ids with the same stamp, if any.
    """

    stamp_ns: int
    frame_id: str
    image: object
    label: Optional[np.ndarray]


@dataclass
class FrameStats:
    """Counts :func:`read_frames` fills in while it iterates."""

    images: int = 0
    labels: int = 0
    matched: int = 0
    images_without_label: int = 0
    labels_without_image: int = 0


def read_frames(path, image_topic: str, label_topic: Optional[str] = None,
                stats: Optional[FrameStats] = None, max_delay_s: float = 5.0) -> Iterator[Frame]:
    """Camera frames with their labels, matched by header stamp.

    Frames come in recording order when labels are recorded with (or shortly after) their
    images; an image whose label has not arrived within ``max_delay_s`` seconds of
    recording time is yielded without one. Nothing is dropped silently: ``stats`` counts
    images without a label and labels without an image.

    Args:
        path: the bag.
        image_topic: ``sensor_msgs/Image`` or ``CompressedImage`` topic.
        label_topic: mono8 label topic, or None.
        stats: a :class:`FrameStats` to fill in.
        max_delay_s: how long (recording time) an image waits for its label.
    """
    stats = stats if stats is not None else FrameStats()
    topics = [image_topic] + ([label_topic] if label_topic else [])
    types = {image_topic: (IMAGE_TYPE, COMPRESSED_TYPE)}
    if label_topic:
        types[label_topic] = IMAGE_TYPE
    pending_images: dict[int, tuple[str, object, int]] = {}
    pending_labels: dict[int, np.ndarray] = {}
    order: list[int] = []                       # pending image stamps in arrival order
    label_order: list[int] = []
    delay = int(max_delay_s * 1e9)
    clock = 0
    for topic, stamp, frame_id, msg in read_messages(path, topics, types):
        clock = max(clock, stamp)
        if topic == image_topic:
            stats.images += 1
            if not label_topic:
                yield Frame(stamp, frame_id, msg, None)
                continue
            if stamp in pending_labels:
                stats.matched += 1
                yield Frame(stamp, frame_id, msg, pending_labels.pop(stamp))
            else:
                pending_images[stamp] = (frame_id, msg, stamp)
                order.append(stamp)
        else:
            stats.labels += 1
            label = label_array(msg)
            if stamp in pending_images:
                frame_id_i, img, _ = pending_images.pop(stamp)
                stats.matched += 1
                yield Frame(stamp, frame_id_i, img, label)
            else:
                pending_labels[stamp] = label
                label_order.append(stamp)
        while label_order and (label_order[0] not in pending_labels or clock - label_order[0] > delay):
            s = label_order.pop(0)
            if pending_labels.pop(s, None) is not None:
                stats.labels_without_image += 1
        # images that waited too long go out without a label
        while order and (order[0] not in pending_images or clock - order[0] > delay):
            s = order.pop(0)
            if s in pending_images:
                frame_id_i, img, _ = pending_images.pop(s)
                stats.images_without_label += 1
                yield Frame(s, frame_id_i, img, None)
    for s in order:
        if s in pending_images:
            frame_id_i, img, _ = pending_images.pop(s)
            stats.images_without_label += 1
            yield Frame(s, frame_id_i, img, None)
    stats.labels_without_image += len(pending_labels)
