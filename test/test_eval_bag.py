"""segblocks-eval-bag: frame accounting over both storages and image transports, the
Cityscapes mIoU from one accumulated confusion matrix, agreement and GMACs over a tau
sweep, the report files, and one clear error line for every way a user can get it wrong.

CPU, small frames, 64-px blocks; one random-weights engine is shared by the tests that
call :func:`evaluate_bag` directly.
"""

import io
import json
import math

import numpy as np
import pytest

pytest.importorskip("rosbags")

from PIL import Image as PILImage  # noqa: E402

from segblocks_core.checkpoint import save_checkpoint  # noqa: E402
from segblocks_core.data.scenes import render_sequence  # noqa: E402
from segblocks_core.engine import SegmentationEngine  # noqa: E402
from segblocks_core.metrics import confusion_matrix, miou  # noqa: E402
from segblocks_core.models import build_model  # noqa: E402
from segblocks_ros import eval_bag  # noqa: E402
from segblocks_ros.bagfiles import (IMAGE_TYPE, ImageBagWriter, list_topics,  # noqa: E402
                                    write_synthetic_bag)
from segblocks_ros.eval_bag import EvalError, evaluate_bag, main  # noqa: E402
from conftest import graded_texture  # noqa: E402

H, W = 64, 128
IMG, LAB = "/camera/image_raw", "/camera/labels"
T0 = 1_700_000_000 * 10**9
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def engine():
    import torch

    torch.manual_seed(0)            # the same random weights in every run
    return SegmentationEngine(checkpoint="random", device="cpu", block_size=64)


def decoded_frames(path, topic=IMG):
    """The bag's images decoded independently of the tool (Pillow / numpy)."""
    from segblocks_ros.bagfiles import read_messages

    out = []
    for _, _, _, msg in read_messages(path, [topic]):
        if hasattr(msg, "format"):
            out.append(np.array(PILImage.open(io.BytesIO(msg.data.tobytes())).convert("RGB")))
        else:
            assert msg.encoding == "rgb8"
            out.append(msg.data.reshape(msg.height, msg.width, 3).copy())
    return out


def run_cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# -- frames and rows -----------------------------------------------------------------------------

@pytest.mark.parametrize("storage,compressed,labels", [
    ("sqlite3", None, True), ("mcap", "jpeg", True), ("mcap", "png", False), ("sqlite3", "jpeg", False),
])
def test_every_frame_runs_through_dense_and_every_tau(tmp_path, engine, storage, compressed, labels):
    path = tmp_path / "bag"
    info = write_synthetic_bag(path, 3, H, W, seed=3, storage=storage, compressed=compressed,
                               label_topic=LAB if labels else None)
    report = evaluate_bag(path, IMG, LAB if labels else None, taus=(1.0, 0.3), engine=engine, warmup=0)

    assert [r.name for r in report.rows] == ["dense", "tau=0.3", "tau=1"]
    assert [r.tau for r in report.rows] == [None, 0.3, 1.0]
    f = report.frames
    assert (f.images_in_bag, f.evaluated, f.not_evaluated, f.complete) == (3, 3, 0, True)
    assert (f.with_label, f.labels_in_bag) == ((3, 3) if labels else (0, None))
    assert f.images_without_label == 0 and f.labels_without_image == 0
    assert [p["stamp_ns"] for p in report.per_frame] == info.stamps
    assert all(set(p["rows"]) == {"dense", "tau=0.3", "tau=1"} for p in report.per_frame)
    assert (report.width, report.height) == (W, H)
    for r in report.rows:
        assert r.frames == 3 and r.frames_with_labels == (3 if labels else 0)
        assert r.latency_ms_p50 <= r.latency_ms_p95 and r.latency_ms_mean > 0 and r.fps > 0
        assert r.peak_memory_mib > 0
        assert r.gmacs_effective <= r.gmacs_dense
    dense = report.rows[0]
    assert dense.agreement_miou == 100.0 and dense.agreement_pixel_accuracy == 100.0 and dense.drop == 0.0
    assert dense.highres_fraction == 1.0 and dense.gmacs_effective == dense.gmacs_dense
    # random weights: the labels' mIoU is reported but tau is chosen by agreement
    assert report.metric == "agreement"
    assert (dense.miou is not None) == labels and (dense.pixel_accuracy is not None) == labels
    if labels:
        # the dense row's mIoU is that of the engine on the bag's (decoded) frames
        targets = [s.label for s in render_sequence(3, 3, H, W)]
        images = decoded_frames(path)
        conf = sum(confusion_matrix(engine.infer(im, adaptive=False).labels[0], t, 19)
                   for im, t in zip(images, targets))
        assert dense.miou == pytest.approx(miou(conf), abs=1e-9)


def test_unmatched_images_and_labels_are_counted(tmp_path, engine):
    path = tmp_path / "bag"
    scenes = list(render_sequence(5, 5, H, W))
    with ImageBagWriter(path, "mcap") as w:
        for i, s in enumerate(scenes):
            w.write_image(IMG, s.image, T0 + i)
            if i in (0, 1, 3):
                w.write_label(LAB, s.label, T0 + i)
        w.write_label(LAB, scenes[4].label, T0 + 99)           # no image has this stamp
    report = evaluate_bag(path, IMG, LAB, taus=(0.5,), engine=engine, warmup=0)
    f = report.frames
    assert (f.images_in_bag, f.labels_in_bag, f.evaluated) == (5, 4, 5)
    assert (f.with_label, f.images_without_label, f.labels_without_image) == (3, 2, 1)
    assert sorted(p["stamp_ns"] for p in report.per_frame) == [T0 + i for i in range(5)]
    assert {p["stamp_ns"] - T0 for p in report.per_frame if p["has_label"]} == {0, 1, 3}
    assert [r.frames for r in report.rows] == [5, 5] and [r.frames_with_labels for r in report.rows] == [3, 3]

    limited = evaluate_bag(path, IMG, LAB, taus=(0.5,), engine=engine, warmup=0, max_frames=2)
    f = limited.frames
    assert (f.evaluated, f.not_evaluated, f.complete) == (2, 3, False)
    assert [r.frames for r in limited.rows] == [2, 2]
    md = eval_bag.format_markdown(limited)
    assert "not evaluated (--max-frames): 3 images" in md


def test_raw_encodings_other_than_rgb8_decode_like_the_node(tmp_path, engine):
    """bgr8 and yuv422 bags give the frames the node's codec gives (exact for bgr8)."""
    rgb_path, bgr_path = tmp_path / "rgb", tmp_path / "bgr"
    write_synthetic_bag(rgb_path, 2, H, W, seed=4, label_topic=None)
    write_synthetic_bag(bgr_path, 2, H, W, seed=4, label_topic=None, encoding="bgr8", storage="mcap")
    a = evaluate_bag(rgb_path, IMG, taus=(0.3,), engine=engine, warmup=0)
    b = evaluate_bag(bgr_path, IMG, taus=(0.3,), engine=engine, warmup=0)
    assert [p["rows"]["tau=0.3"]["highres_fraction"] for p in a.per_frame] == \
           [p["rows"]["tau=0.3"]["highres_fraction"] for p in b.per_frame]
    assert a.rows[1].agreement_miou == b.rows[1].agreement_miou
    yuv = tmp_path / "yuv"
    write_synthetic_bag(yuv, 2, H, W, seed=4, label_topic=None, encoding="yuv422")
    assert evaluate_bag(yuv, IMG, taus=(0.3,), engine=engine, warmup=0).frames.evaluated == 2


class SpyEngine:
    """The real engine, recording what every ``infer`` call returned."""

    def __init__(self, engine):
        self._engine = engine
        self.calls = []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def infer(self, images, tau=0.3, adaptive=True):
        result = self._engine.infer(images, tau=tau, adaptive=adaptive)
        self.calls.append((tau if adaptive else None, result))
        return result


def test_rows_summarise_the_engines_own_stats(tmp_path, engine):
    """Latency is the engine's total_ms per frame; high-res share and GMACs are its per-frame
    numbers; every infer call but the warm-up ones is counted."""
    path = tmp_path / "bag"
    write_synthetic_bag(path, 4, H, W, seed=11, label_topic=None)
    spy = SpyEngine(engine)
    report = evaluate_bag(path, IMG, taus=(0.2, 0.6), engine=spy, warmup=1)
    assert len(spy.calls) == 3 * (4 + 1)
    measured = spy.calls[3:]                      # the first three are the warm-up
    for row in report.rows:
        stats = [r.stats[0] for tau, r in measured if tau == row.tau]
        assert len(stats) == row.frames == 4
        total = np.array([s.total_ms for s in stats])
        assert row.latency_ms_mean == pytest.approx(total.mean())
        assert row.latency_ms_p50 == pytest.approx(np.percentile(total, 50))
        assert row.latency_ms_p95 == pytest.approx(np.percentile(total, 95))
        assert row.fps == pytest.approx(1000 * 4 / total.sum())
        assert row.highres_fraction == pytest.approx(np.mean([s.highres_fraction for s in stats]))
        assert row.gmacs_effective == pytest.approx(np.mean([s.gmacs_effective for s in stats]))
        assert row.gmacs_executed == pytest.approx(np.mean([s.gmacs_executed for s in stats]))
    assert [tau for tau, _ in measured[:3]] == [None, 0.2, 0.6]     # dense first, per frame


# -- accuracy -----------------------------------------------------------------------------------

@pytest.fixture
def constant_checkpoint(tmp_path):
    """A checkpoint whose network predicts class 3 at every pixel (zero classifier weights,
    bias 10 for class 3), so the expected scores follow from the labels by hand."""
    import torch

    net = build_model("swiftnet_rn18", 19)
    with torch.no_grad():
        net.logits.conv.weight.zero_()
        net.logits.conv.bias.zero_()
        net.logits.conv.bias[3] = 10.0
    path = tmp_path / "class3.pt"
    save_checkpoint(str(path), net, "swiftnet_rn18", 19)
    return path


def test_miou_accumulates_one_confusion_matrix_over_all_frames(tmp_path, capsys, constant_checkpoint):
    """Frame 1: left half class 3, right half class 5. Frame 2: top half class 3, bottom half
    ignore (255). Prediction: 3 everywhere.

    Accumulated (Cityscapes): class 3 TP = 4096 + 4096, FP = 4096 -> IoU 2/3; class 5 TP 0,
    FN 4096 -> IoU 0; mIoU = 33.33, pixel accuracy 8192 / 12288 = 66.67. Averaging per
    frame would give (25 + 100) / 2 = 62.5 and (50 + 100) / 2 = 75; counting the ignored
    pixels would change both.
    """
    path = tmp_path / "bag"
    rng = np.random.default_rng(0)
    label1 = np.full((H, W), 3, np.uint8)
    label1[:, W // 2:] = 5
    label2 = np.full((H, W), 3, np.uint8)
    label2[H // 2:] = 255
    with ImageBagWriter(path, "sqlite3") as w:
        for i, label in enumerate((label1, label2)):
            w.write_compressed(IMG, rng.integers(0, 256, (H, W, 3), dtype=np.uint8), T0 + i, "png")
            w.write_label(LAB, label, T0 + i)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, path, "--image-topic", IMG, "--label-topic", LAB, "--taus", "0.2,5",
                              "--checkpoint", constant_checkpoint, "--device", "cpu", "--block-size", 64,
                              "--warmup", 0, "--no-progress", "--out", out)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"] == str(constant_checkpoint)
    assert report["metric"] == "miou"
    for row in report["rows"]:
        assert row["miou"] == pytest.approx(100 / 3, abs=1e-9)
        assert row["pixel_accuracy"] == pytest.approx(200 / 3, abs=1e-9)
        assert row["per_class_iou"]["wall"] == pytest.approx(200 / 3, abs=1e-9)      # class 3
        assert row["per_class_iou"]["pole"] == 0.0                                    # class 5
        assert row["per_class_iou"]["road"] is None                                   # empty union
        assert row["agreement_miou"] == 100.0 and row["drop"] == pytest.approx(0.0, abs=1e-9)
        assert row["frames_with_labels"] == 2
    # nothing lost, so the largest tau is recommended
    assert report["recommendation"]["tau"] == 5.0
    assert "recommended tau: 5" in stdout


def test_agreement_and_gmacs_fall_as_tau_rises(tmp_path, engine):
    path = tmp_path / "bag"
    images = [graded_texture(seed=s) for s in range(3)]
    with ImageBagWriter(path, "mcap") as w:
        for i, img in enumerate(images):
            w.write_image(IMG, img, T0 + i * 10**8)
    taus = (0.05, 0.4, 1.5, 5.0)
    report = evaluate_bag(path, IMG, None, taus=taus, engine=engine, warmup=0, max_drop=100.0)
    rows = report.rows
    # one more 64-px column of blocks goes low-res at every step
    assert [r.highres_fraction for r in rows] == [1.0, 0.75, 0.5, 0.25, 0.0]
    gmacs = [r.gmacs_effective for r in rows]
    assert all(a > b for a, b in zip(gmacs, gmacs[1:])), gmacs
    assert all(r.gmacs_executed >= r.gmacs_effective for r in rows)
    agreement = [r.agreement_miou for r in rows]
    assert agreement[0] == 100.0
    assert all(a >= b for a, b in zip(agreement, agreement[1:])), agreement
    assert agreement[-1] < agreement[1] - 1.0, agreement
    assert report.metric == "agreement"
    assert [r.drop for r in rows] == pytest.approx([100.0 - a for a in agreement])

    # the agreement is the mIoU of one confusion matrix of the adaptive vs dense predictions
    for r in rows[1:]:
        conf = sum(confusion_matrix(engine.infer(im, tau=r.tau).labels[0],
                                    engine.infer(im, adaptive=False).labels[0], 19) for im in images)
        assert r.agreement_miou == pytest.approx(miou(conf), abs=1e-9)

    # recommendation: the largest tau within max_drop
    assert report.recommendation.tau == 5.0
    drops = {r.tau: r.drop for r in rows[1:]}
    between = (drops[0.4] + drops[1.5]) / 2
    if drops[0.4] < between < drops[1.5]:
        rec = eval_bag._recommend(rows, report.metric, between)
        assert rec.tau == 0.4 and rec.drop == drops[0.4]
        assert rec.gmacs_saving_percent == pytest.approx(100 * (1 - rows[2].gmacs_effective / rows[0].gmacs_effective))
    none = eval_bag._recommend(rows, report.metric, min(drops.values()) / 2) if min(drops.values()) > 0 else None
    if none is not None:
        assert none.tau is None and "no tau keeps" in none.message


# -- report files ---------------------------------------------------------------------------------

def test_cli_writes_json_markdown_and_png(tmp_path, capsys):
    path = tmp_path / "bag"
    write_synthetic_bag(path, 2, H, W, seed=6, storage="mcap", compressed="jpeg")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, path, "--image-topic", IMG, "--label-topic", LAB, "--taus", "0.5,0.1,0.3",
                              "--checkpoint", "random", "--device", "cpu", "--block-size", 64,
                              "--max-drop", 2.5, "--out", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "tradeoff.png"]

    def no_nan(token):
        raise AssertionError(f"report.json holds {token}: not strict JSON")
    report = json.loads((out / "report.json").read_text(), parse_constant=no_nan)
    names = [r["name"] for r in report["rows"]]
    assert names == ["dense", "tau=0.1", "tau=0.3", "tau=0.5"]
    assert report["frames"]["evaluated"] == 2 and report["weights"].startswith("RANDOM WEIGHTS")
    assert report["memory_kind"] in ("cpu_process_peak_rss", "cpu_process_max_rss")
    assert len(report["per_frame"]) == 2
    rec = report["recommendation"]
    # random weights: the mIoU vs labels is reported, the recommendation goes by agreement
    assert rec["max_drop"] == 2.5 and rec["metric"] == report["metric"] == "agreement"
    assert all(r["miou"] is not None for r in report["rows"])
    assert [r["drop"] for r in report["rows"]] == pytest.approx([100 - r["agreement_miou"] for r in report["rows"]])
    ok = [r["tau"] for r in report["rows"][1:] if r["drop"] <= 2.5 + 1e-9]
    assert rec["tau"] == (max(ok) if ok else None)
    assert "random weights: the labels are not used" in rec["message"]

    md = (out / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| config")]
    assert [line.split("|")[1].strip() for line in table] == names
    for line, row in zip(table, report["rows"]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1] == str(row["frames"]) and cells[3] == f"{row['gmacs_effective']:.3f}"
        assert cells[12] == f"{row['agreement_miou']:.2f}"
    assert rec["message"] in md
    png = (out / "tradeoff.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert PILImage.open(io.BytesIO(png)).size[0] > 500
    # stdout: the same table and the recommendation
    assert all(line in stdout for line in table)
    assert rec["message"] in stdout


def test_a_failed_write_leaves_no_report(tmp_path, engine, monkeypatch):
    path = tmp_path / "bag"
    write_synthetic_bag(path, 1, H, W, label_topic=None)
    report = evaluate_bag(path, IMG, taus=(0.3,), engine=engine, warmup=0)
    out = tmp_path / "out"
    eval_bag.write_report(report, out)
    old = (out / "report.json").read_text()

    def broken(*_):
        raise OSError("disk full")
    monkeypatch.setattr(eval_bag, "_plot", broken)
    with pytest.raises(OSError, match="disk full"):
        eval_bag.write_report(report, out)
    # the earlier finished report is untouched, and no temporary files remain
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "tradeoff.png"]
    assert (out / "report.json").read_text() == old
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError):
        eval_bag.write_report(report, fresh)
    assert list(fresh.iterdir()) == []


# -- errors: exit status 1, one line on stderr, no report ---------------------------------------------

def _bag(tmp_path, **kw):
    path = tmp_path / "bag"
    write_synthetic_bag(path, 2, H, W, **kw)
    return path


def _corrupt(tmp_path, storage, how):
    path = _bag(tmp_path, storage=storage)
    data_file = next(p for p in path.iterdir() if p.name != "metadata.yaml")
    raw = data_file.read_bytes()
    if how == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw = raw[:len(raw) // 3] + b"garbage!" * 600 + raw[len(raw) // 3 + 4800:]
    data_file.write_bytes(raw)
    return path


def _string_topic_bag(tmp_path):
    from segblocks_ros import bagfiles

    path = tmp_path / "bag"
    with ImageBagWriter(path, "sqlite3") as w:
        String = bagfiles._typestore().types["std_msgs/msg/String"]
        w._write("/chatter", "std_msgs/msg/String", String(data="hello"), T0)
    return path


def _raw_encoding_bag(tmp_path, encoding, good_first=False):
    path = tmp_path / "bag"
    with ImageBagWriter(path, "mcap") as w:
        if good_first:
            w.write_image(IMG, np.zeros((H, W, 3), np.uint8), T0)
        w.write_raw(IMG, np.zeros(H * W * 4, np.uint8), H, W, encoding, W * 4, T0 + 1)
    return path


def _empty_topic_bag(tmp_path):
    path = tmp_path / "bag"
    with ImageBagWriter(path, "sqlite3") as w:
        w._connection(IMG, IMAGE_TYPE)                       # a topic that got no message
        w.write_label(LAB, np.zeros((H, W), np.uint8), T0)
    assert list_topics(path)[IMG].count == 0
    return path


def _rgb_label_bag(tmp_path):
    path = tmp_path / "bag"
    with ImageBagWriter(path, "sqlite3") as w:
        w.write_image(IMG, np.zeros((H, W, 3), np.uint8), T0)
        w.write_image(LAB, np.zeros((H, W, 3), np.uint8), T0)
    return path


def _text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("not a bag\n")
    return p


def _empty_dir(tmp_path):
    p = tmp_path / "empty"
    p.mkdir()
    return p


ERROR_CASES = {
    "missing path": (lambda t: t / "nope", [], r"does not exist"),
    "text file": (_text_file, [], r"is not a rosbag2 bag"),
    "empty dir": (_empty_dir, [], r"is not a rosbag2 directory"),
    "truncated db3": (lambda t: _corrupt(t, "sqlite3", "truncate"), [], r"malformed"),
    "garbled db3": (lambda t: _corrupt(t, "sqlite3", "garble"), [], r"malformed"),
    "truncated mcap": (lambda t: _corrupt(t, "mcap", "truncate"), [], r"cannot open bag"),
    "unknown image topic": (lambda t: _bag(t), ["--image-topic", "/front"],
                            r"'/front' is not in .*its topics: /camera/image_raw \(sensor_msgs/msg/Image, 2 msgs\), "
                            r"/camera/labels \(sensor_msgs/msg/Image, 2 msgs\)"),
    "unknown label topic": (lambda t: _bag(t, label_topic=None), ["--label-topic", "/labels"],
                            r"label topic '/labels' is not in .*its topics: /camera/image_raw"),
    "wrong image type": (_string_topic_bag, ["--image-topic", "/chatter"],
                         r"'/chatter' carries std_msgs/msg/String, expected sensor_msgs/msg/Image"),
    "wrong label type": (lambda t: _bag(t, compressed="png", label_topic="/lab2"),
                         ["--label-topic", IMG, "--image-topic", "/lab2"], r"label topic .* carries .*CompressedImage"),
    "rgb labels": (_rgb_label_bag, ["--label-topic", LAB], r"label images must be mono8"),
    "unsupported encoding": (lambda t: _raw_encoding_bag(t, "32FC1"), [], r"unsupported encoding '32FC1'"),
    "zero frames (--max-frames 0)": (lambda t: _bag(t), ["--max-frames", "0"], r"zero frames"),
    "zero frames (empty topic)": (_empty_topic_bag, [], r"zero frames: image topic .* has no messages"),
    "bad checkpoint": (lambda t: _bag(t), ["--checkpoint", "/no/such.pt"], r"checkpoint .* does not exist"),
    "no GPU": (lambda t: _bag(t), ["--device", "cuda"], r"no CUDA GPU"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_exit_1_with_one_line_and_no_report(tmp_path, capsys, case):
    make, extra, pattern = ERROR_CASES[case]
    if case == "no GPU":
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    bag = make(tmp_path)
    out = tmp_path / "out"
    args = [bag, "--image-topic", IMG, "--taus", "0.3", "--block-size", 64, "--device",
            "cpu", "--out", out] + extra
    rc, stdout, err = run_cli(capsys, *args)
    assert rc == 1, (stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("segblocks-eval-bag: error: "), lines[0]
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err and stdout == ""
    assert not (out / "report.json").exists() and not (out / "report.md").exists()


def test_error_after_some_frames_writes_nothing(tmp_path, capsys):
    """A frame with an unsupported encoding behind a good one stops the run: the error is
    the last line on stderr and no report files appear."""
    bag = _raw_encoding_bag(tmp_path, "16UC1", good_first=True)
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, bag, "--image-topic", IMG, "--taus", "0.3", "--block-size", 64,
                         "--device", "cpu", "--checkpoint", "random", "--out", out)
    assert rc == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("segblocks-eval-bag: error: frame 1 (stamp ") and "'16UC1'" in last
    assert "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_api_argument_errors(tmp_path, engine):
    bag = _bag(tmp_path)
    with pytest.raises(EvalError, match="at least one tau"):
        evaluate_bag(bag, IMG, taus=(), engine=engine)
    with pytest.raises(EvalError, match="finite"):
        evaluate_bag(bag, IMG, taus=(math.nan,), engine=engine)
    with pytest.raises(EvalError, match="batch-size"):
        evaluate_bag(bag, IMG, engine=engine, batch_size=0)
    with pytest.raises(EvalError, match="must differ"):
        evaluate_bag(bag, IMG, IMG, engine=engine)
    assert eval_bag.parse_taus("0.3, 0.1,0.3,,") == [0.1, 0.3]
    with pytest.raises(ValueError, match="not a number"):
        eval_bag.parse_taus("0.1,x")


def test_batched_inference_gives_the_same_accuracy(tmp_path, engine):
    path = tmp_path / "bag"
    write_synthetic_bag(path, 3, H, W, seed=8)
    one = evaluate_bag(path, IMG, LAB, taus=(0.3,), engine=engine, warmup=0)
    two = evaluate_bag(path, IMG, LAB, taus=(0.3,), engine=engine, warmup=0, batch_size=2)
    assert two.batch_size == 2 and [r.frames for r in two.rows] == [3, 3]
    for a, b in zip(one.rows, two.rows):
        assert b.miou == pytest.approx(a.miou, abs=1e-6)
        assert b.agreement_miou == pytest.approx(a.agreement_miou, abs=1e-6)
        assert b.gmacs_effective == pytest.approx(a.gmacs_effective)
