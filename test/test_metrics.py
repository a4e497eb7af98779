"""Confusion matrix, IoU and pixel accuracy against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from segblocks_core.metrics import confusion_matrix, miou, per_class_iou, pixel_accuracy


def tiny_case():
    # 3 classes; 255 = ignore. Counted pixels (target -> prediction):
    #   0->0 x2, 0->1 x1, 1->1 x2, 2->0 x1, (255 -> anything is not counted)
    target = np.array([[0, 0, 0, 1], [1, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 0, 1, 1], [1, 0, 2, 1]], np.uint8)
    return pred, target


def test_confusion_matrix_counts_target_rows_prediction_columns():
    pred, target = tiny_case()
    conf = confusion_matrix(pred, target, 3)
    assert conf.dtype == np.int64
    np.testing.assert_array_equal(conf, [[2, 1, 0], [0, 2, 0], [1, 0, 0]])


def test_miou_equals_the_hand_computed_value():
    pred, target = tiny_case()
    conf = confusion_matrix(pred, target, 3)
    # IoU_0 = 2 / (2 + 1 + 1) = 0.5, IoU_1 = 2 / (2 + 1 + 0) = 2/3, IoU_2 = 0 / (0 + 0 + 1) = 0
    np.testing.assert_allclose(per_class_iou(conf), [50.0, 200 / 3, 0.0])
    assert miou(conf) == pytest.approx((50.0 + 200 / 3 + 0.0) / 3)
    assert pixel_accuracy(conf) == pytest.approx(100 * 4 / 6)


def test_ignored_pixels_change_nothing_whatever_is_predicted_there():
    pred, target = tiny_case()
    other = pred.copy()
    other[target == 255] = 0
    np.testing.assert_array_equal(confusion_matrix(pred, target, 3), confusion_matrix(other, target, 3))
    assert confusion_matrix(pred, target, 3).sum() == (target != 255).sum()


def test_classes_with_empty_union_are_left_out_of_the_mean():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 0])
    conf = confusion_matrix(pred, target, 4)          # classes 2, 3 never appear
    iou = per_class_iou(conf)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert miou(conf) == pytest.approx((100 * 2 / 3 + 100 * 1 / 2) / 2)


def test_accumulating_over_a_set_is_not_the_mean_of_per_image_scores():
    p1, t1 = np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])
    p2, t2 = np.array([1]), np.array([1])
    total = confusion_matrix(p1, t1, 2) + confusion_matrix(p2, t2, 2)
    # class 0: 3 / 4, class 1: 1 / 2 over the whole set
    assert miou(total) == pytest.approx((75.0 + 50.0) / 2)


def test_torch_inputs_give_the_same_matrix():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, (2, 7, 9)).astype(np.uint8)
    target[0, :2] = 255
    pred = rng.integers(0, 5, (2, 7, 9))
    expected = confusion_matrix(pred, target, 5)
    got = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target).long(), 5)
    np.testing.assert_array_equal(got, expected)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64


def test_out_of_range_ids_raise_with_the_ids():
    with pytest.raises(ValueError, match=r"target ids \[7\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 7]), 3)
    with pytest.raises(ValueError, match=r"predicted ids \[3\]"):
        confusion_matrix(np.array([3, 1]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(np.zeros(3), np.zeros(4), 3)


def test_empty_matrix_scores_are_nan():
    conf = np.zeros((3, 3), np.int64)
    assert math.isnan(miou(conf)) and math.isnan(pixel_accuracy(conf))
