"""segblocks-replay-bag through real rclpy: every frame of a bag arrives with its original
header and payload, spaced as recorded; loops repeat the stamps; with --record-stats and
the real node running, one latency row per frame is written.

The replayer uses its own rclpy context (as the command line does); the test subscriber
and the node live in the harness's context, in a namespace of their own, on a private
ROS domain (see conftest_ros).
"""

import csv
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("rosbags")

from conftest_ros import RELIABLE, Inbox, ros, wait_until  # noqa: E402,F401
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from segblocks_ros.bagfiles import (IMAGE_TYPE, ImageBagWriter, read_messages,  # noqa: E402
                                    write_synthetic_bag)
from segblocks_ros.replay_bag import (STATS_COLUMNS, ReplayError, main, replay_bag,  # noqa: E402
                                      write_stats)

IMG = "/camera/image_raw"
H, W = 64, 128


def subscribe(ros, msg_type, topic) -> Inbox:
    inbox = Inbox()
    inbox.subscription = ros.helper.create_subscription(msg_type, topic, inbox, RELIABLE)
    return inbox


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


@pytest.mark.parametrize("storage,compressed,encoding", [
    ("sqlite3", None, "bgr8"), ("mcap", "jpeg", "rgb8"),
])
def test_subscriber_gets_every_frame_with_original_header_and_timing(ros, tmp_path, storage, compressed,
                                                                     encoding, quiet_gc):
    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 5, H, W, seed=2, storage=storage, compressed=compressed,
                               encoding=encoding, rate_hz=20.0, frame_id="cam_front", label_topic=None)
    recorded = [m for _, _, _, m in read_messages(bag, [IMG])]
    topic = f"{ros.namespace()}/camera/image"
    inbox = subscribe(ros, CompressedImage if compressed else Image, topic)

    result = replay_bag(bag, IMG, output_topic=topic, rate=0.5, qos="reliable", qos_depth=100)
    try:
        wait_until(lambda: len(inbox.snapshot()) >= 5, 10.0, "5 frames")
    except AssertionError:
        raise AssertionError(f"received {[stamp_of(m) for m in inbox.snapshot()]}, published "
                             f"{[f.stamp_ns for f in result.frames]}") from None
    time.sleep(0.2)
    got = inbox.snapshot()
    assert result.topic == topic and result.published == 5 and not result.interrupted
    assert [stamp_of(m) for m in got] == info.stamps
    assert all(m.header.frame_id == "cam_front" for m in got)
    for m, r in zip(got, recorded):
        assert bytes(m.data) == r.data.tobytes()
        if compressed:
            assert m.format == "jpeg"
        else:
            assert (m.height, m.width, m.encoding, m.step) == (H, W, "bgr8", r.step)
    # recorded spacing 50 ms at rate 0.5: one frame every 100 ms, on an absolute schedule.
    # "Never early" is what can be asserted on a loaded machine (a CI stall of 1.5 s was
    # seen), and at rate 0.5 it also fails if the rate were ignored (50 ms) or multiplied
    # (25 ms); the upper bound only catches a replay that hangs.
    t0 = result.frames[0].published_mono
    offsets = [rec.published_mono - t0 for rec in result.frames]
    expected = [(stamp - info.stamps[0]) / 1e9 / 0.5 for stamp in info.stamps]
    assert expected[-1] == pytest.approx(0.4)
    assert all(o >= e - 1e-3 for o, e in zip(offsets, expected)), (offsets, expected)
    assert result.duration_s <= expected[-1] + 10.0


def test_loop_plays_the_bag_again_with_the_same_stamps(ros, tmp_path):
    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 3, H, W, seed=2, rate_hz=50.0, label_topic=None)
    topic = f"{ros.namespace()}/image"
    inbox = subscribe(ros, Image, topic)
    result = replay_bag(bag, IMG, output_topic=topic, loops=2, qos_depth=100)
    wait_until(lambda: len(inbox.snapshot()) >= 6, 10.0, "6 frames")
    assert [stamp_of(m) for m in inbox.snapshot()] == info.stamps * 2
    assert [(f.loop, f.index) for f in result.frames] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert result.loops == 2


def test_cli_applies_ros_remapping(ros, tmp_path, capsys):
    """``--ros-args -r from:=to`` remaps the bag's topic like any ROS 2 executable."""
    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 3, H, W, seed=1, rate_hz=50.0, label_topic=None)
    topic = f"{ros.namespace()}/remapped"
    inbox = subscribe(ros, Image, topic)
    rc = main([str(bag), "--image-topic", IMG, "--qos", "reliable", "--qos-depth", "50", "--loop", "1",
               "--ros-args", "-r", f"{IMG}:={topic}"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"published 3 frames on {topic}" in out
    wait_until(lambda: len(inbox.snapshot()) >= 3, 10.0, "3 frames")
    assert [stamp_of(m) for m in inbox.snapshot()] == info.stamps


def test_stop_ends_an_endless_loop(ros, tmp_path, quiet_gc):
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, 2, H, W, rate_hz=20.0, label_topic=None)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    result = replay_bag(bag, IMG, output_topic=f"{ros.namespace()}/image", loops=None, stop=stop,
                        wait_for_subscriber_s=0, log=lambda line: None)
    assert result.interrupted and result.loops >= 2 and result.published >= 4


def test_record_stats_writes_one_latency_row_per_frame(ros, tmp_path, capsys):
    node = ros.start_node(qos_reliability="reliable")
    ns = node.get_namespace()
    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 3, H, W, seed=5, rate_hz=10.0, label_topic=None)
    # the engine's first calls are slow (allocations, first layouts): not what is measured here
    for _, _, _, m in read_messages(bag, [IMG]):
        node.engine.infer(m.data.reshape(H, W, 3).copy(), tau=0.3)
    stats_file = tmp_path / "out" / "latency.csv"
    # 10 Hz at rate 0.125: a frame every 800 ms, far more than one 64x128 inference on the CPU,
    # so the node (which keeps only the newest frame) should drop none
    rc = main([str(bag), "--image-topic", IMG, "--output-topic", f"{ns}/image", "--rate", "0.125",
               "--stats-topic", f"{ns}/segmentation/stats", "--record-stats", str(stats_file),
               "--stats-timeout", "20"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    with open(stats_file, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == STATS_COLUMNS
        rows = list(reader)
    # one row per published frame, in order, with the original stamps
    assert [int(r["stamp_ns"]) for r in rows] == info.stamps
    assert [(int(r["loop"]), int(r["index"])) for r in rows] == [(0, i) for i in range(3)]
    counters = node.frame_counters()[""]
    answered = [r for r in rows if r["stats_received"] == "True"]
    # a frame has a latency exactly when the node processed it (on a heavily loaded machine
    # the node may still drop one: then its row says so)
    assert counters["frames_received"] == 3
    assert len(answered) == counters["frames_processed"] >= 2
    assert all(r["latency_ms"] == "" for r in rows if r["stats_received"] == "False")
    assert rows[-1]["stats_received"] == "True"         # the newest frame is never dropped
    for r in answered:
        assert r["frame_id"] == "camera"
        latency, node_total = float(r["latency_ms"]), float(r["node_total_ms"])
        # through ROS includes the node's own inference time and the two DDS hops
        assert node_total > 0 and latency > node_total
        assert latency >= float(r["node_latency_ms"])
        assert latency < 20_000
        assert float(r["tau"]) == pytest.approx(0.3) and r["adaptive"] == "True"
        assert 0.0 <= float(r["highres_fraction"]) <= 1.0
    assert f"stats for {len(answered)} frames" in out and "latency through ROS mean" in out


def test_node_history_is_counted_apart_and_never_answers_a_frame(ros, tmp_path):
    """The node's statistics are transient local: its answer to a frame processed before the
    replay reaches the replayer as history. It is not a latency of any replayed frame, and
    it is counted (before the first publish, or as unmatched if the history arrives later)."""
    from conftest_ros import flat_and_textured, image_msg

    node = ros.start_node(qos_reliability="reliable")
    ns = node.get_namespace()
    stats = ros.inbox(DiagnosticArray, f"{ns}/segmentation/stats")
    early = image_msg(flat_and_textured(H, W), "camera", stamp_ns=1_600_000_000_000_000_000)
    ros.publisher(Image, f"{ns}/image", wait_for=node).publish(early)
    stats.frame("camera", timeout=20.0)

    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 3, H, W, seed=5, rate_hz=10.0, label_topic=None)
    result = replay_bag(bag, IMG, output_topic=f"{ns}/image", rate=0.25, record_stats=True,
                        stats_topic=f"{ns}/segmentation/stats", stats_timeout_s=20.0)
    assert [f.stamp_ns for f in result.frames] == info.stamps
    assert all(f.stats_received for f in result.frames), [f.as_row() for f in result.frames]
    # a volatile subscription would not have got the history at all
    assert result.stats_before_start + result.stats_unmatched == 1
    assert result.summary()["stats_before_start"] == result.stats_before_start


def test_volatile_stats_publisher_gets_a_volatile_subscription(ros, tmp_path):
    """Another node's statistics may be volatile: a transient-local subscription would not
    match it, so the replayer subscribes with the durability the publisher offers."""
    ns = ros.namespace()
    answer = ros.helper.create_publisher(DiagnosticArray, f"{ns}/segmentation/stats", RELIABLE)

    def respond(msg):
        out = DiagnosticArray()
        out.header = msg.header
        answer.publish(out)

    responder = ros.helper.create_subscription(Image, f"{ns}/image", respond, RELIABLE)
    try:
        bag = tmp_path / "bag"
        write_synthetic_bag(bag, 3, H, W, rate_hz=10.0, label_topic=None)
        lines = []
        result = replay_bag(bag, IMG, output_topic=f"{ns}/image", record_stats=True,
                            stats_topic=f"{ns}/segmentation/stats", stats_timeout_s=20.0,
                            log=lines.append)
        assert not any("warning" in line for line in lines), lines
        assert sum(f.stats_received for f in result.frames) >= 2, [f.as_row() for f in result.frames]
        assert result.frames[-1].stats_received
    finally:
        ros.helper.destroy_subscription(responder)
        ros.helper.destroy_publisher(answer)


def test_record_stats_json_and_frames_without_stats(ros, tmp_path):
    """No node is running: every frame is published, none gets statistics, and the JSON file
    says so frame by frame."""
    bag = tmp_path / "bag"
    info = write_synthetic_bag(bag, 3, H, W, rate_hz=50.0, label_topic=None)
    ns = ros.namespace()
    inbox = subscribe(ros, Image, f"{ns}/image")
    lines = []
    result = replay_bag(bag, IMG, output_topic=f"{ns}/image", record_stats=True,
                        stats_topic=f"{ns}/segmentation/stats", wait_for_subscriber_s=2.0,
                        stats_timeout_s=0.3, log=lines.append)
    assert any("nothing publishes" in line for line in lines)
    path = write_stats(result, tmp_path / "lat.json", meta={"bag": str(bag)})
    doc = json.loads(path.read_text())
    assert doc["summary"]["published"] == 3 and doc["summary"]["stats_received"] == 0
    assert [f["stamp_ns"] for f in doc["frames"]] == info.stamps
    assert all(f["latency_ms"] is None and f["stats_received"] is False for f in doc["frames"])
    wait_until(lambda: len(inbox.snapshot()) >= 3, 10.0, "3 frames")


# -- errors --------------------------------------------------------------------------------------

def _string_bag(tmp_path):
    from segblocks_ros import bagfiles

    path = tmp_path / "bag"
    with ImageBagWriter(path, "mcap") as w:
        String = bagfiles._typestore().types["std_msgs/msg/String"]
        w._write("/chatter", "std_msgs/msg/String", String(data="hi"), 1)
    return path


def _empty_topic_bag(tmp_path):
    path = tmp_path / "bag"
    with ImageBagWriter(path, "sqlite3") as w:
        w._connection(IMG, IMAGE_TYPE)
        w.write_label("/labels", np.zeros((4, 4), np.uint8), 1)
    return path


@pytest.mark.parametrize("make,extra,pattern", [
    (lambda t: t / "nope", [], "does not exist"),
    (lambda t: (t / "x.txt").write_text("hi") and t / "x.txt", [], "not a rosbag2 bag"),
    (lambda t: write_synthetic_bag(t / "bag", 1, H, W) and t / "bag", ["--image-topic", "/front"],
     r"'/front' is not in .*its topics: /camera/image_raw \(sensor_msgs/msg/Image, 1 msgs\)"),
    (_string_bag, ["--image-topic", "/chatter"], "carries std_msgs/msg/String"),
    (_empty_topic_bag, [], "zero frames"),
    (lambda t: write_synthetic_bag(t / "bag", 1, H, W) and t / "bag", ["--rate", "0"], "rate must be a positive number"),
])
def test_cli_errors_exit_1_with_one_line(tmp_path, capsys, make, extra, pattern):
    import re

    bag = make(tmp_path)
    rc = main([str(bag), "--image-topic", IMG, *extra, "--record-stats", str(tmp_path / "lat.csv")])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("segblocks-replay-bag: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "lat.csv").exists()


def test_api_rejects_bad_arguments(tmp_path):
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, 1, H, W, label_topic=None)
    with pytest.raises(ReplayError, match="loops"):
        replay_bag(bag, IMG, loops=0)
    with pytest.raises(ReplayError, match="qos"):
        replay_bag(bag, IMG, qos="fast", wait_for_subscriber_s=0)
