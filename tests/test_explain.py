"""Tests for explain: feature maps and Grad-CAM, on hand-made networks and on the shipped model with real faces."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

import data_load
from pipeline import inference
from pipeline import explain
import models


class OneCellNet(nn.Module):
    """A network whose keypoint 0 reads only the feature-map cell (row 1, column 2) and keypoint 1 only (3, 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU(inplace=True))
        self.head = nn.Linear(2 * 4 * 4, 4)
        with torch.no_grad():
            self.features[0].weight.fill_(1.0)
            self.features[0].bias.fill_(0.1)
            self.head.weight.zero_()
            self.head.bias.zero_()
            for channel in range(2):
                self.head.weight[0, channel * 16 + 1 * 4 + 2] = 1.0  # keypoint 0, x
                self.head.weight[1, channel * 16 + 1 * 4 + 2] = -2.0  # keypoint 0, y: a negative weight counts too
                self.head.weight[2, channel * 16 + 3 * 4 + 0] = 0.5  # keypoint 1, x only
        self.input_size = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def test_grad_cam_points_at_the_cell_the_keypoint_reads():
    model = OneCellNet()
    image = np.random.default_rng(0).uniform(0.2, 1.0, (4, 4)).astype(np.float32)
    for keypoint, cell in ((0, (1, 2)), (1, (3, 0))):
        heat = explain.grad_cam(model, image, keypoint, layer="features.1")
        assert heat.shape == (4, 4) and heat.dtype == np.float32
        assert heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
        assert np.unravel_index(heat.argmax(), heat.shape) == cell


def test_occlusion_finds_the_pixel_the_keypoint_reads():
    model = OneCellNet()  # a 1 x 1 convolution: feature-map cell (row, column) is pixel (row, column)
    image = np.random.default_rng(0).uniform(0.2, 1.0, (4, 4)).astype(np.float32)
    image[1, 2], image[3, 0] = 0.95, 0.05  # far from the mean gray that hides them
    for keypoint, pixel in ((0, (1, 2)), (1, (3, 0))):
        heat = explain.occlusion_map(model, image, keypoint, window=1, stride=1)
        assert heat.shape == (4, 4) and heat.dtype == np.float32 and heat.max() == pytest.approx(1.0)
        assert np.unravel_index(heat.argmax(), heat.shape) == pixel
        assert np.count_nonzero(heat) == 1, "hiding any other pixel leaves the point where it was"


def test_grad_cam_leaves_the_model_as_it_was():
    model = models.build_model("fast", input_size=32)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    heat = explain.grad_cam(model, torch.rand(1, 1, 32, 32), 36)
    assert heat.shape == (32, 32) and 0.0 <= heat.min() and heat.max() <= 1.0
    assert model.training, "the model's mode must be restored"
    assert all(p.grad is None for p in model.parameters()), "no gradients may be left on the weights"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights and BatchNorm statistics must not change"
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU)), "in-place flags must be restored"


def test_grad_cam_rejects_bad_arguments():
    model = models.build_model("fast", input_size=32)
    with pytest.raises(ValueError, match="keypoint_index"):
        explain.grad_cam(model, np.zeros((32, 32), np.float32), 68)
    with pytest.raises(ValueError, match="no layer 'features.99'"):
        explain.grad_cam(model, np.zeros((32, 32), np.float32), 0, layer="features.99")
    with pytest.raises(ValueError, match="not a layer of this model"):
        explain.grad_cam(model, np.zeros((32, 32), np.float32), 0, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="one grayscale image"):
        explain.grad_cam(model, np.zeros((2, 1, 32, 32), np.float32), 0)


def test_grad_cam_explains_the_chosen_convention_of_a_multi_convention_model():
    model = models.build_model("fast", input_size=48, conventions=("300w", "course"), face_score=True)
    crop = np.random.default_rng(1).uniform(0, 1, (48, 48)).astype(np.float32)
    layout = inference.layout_of(model)
    by_convention = {c: explain.grad_cam(model, crop, 30, convention=c) for c in layout.conventions}
    assert np.array_equal(explain.grad_cam(model, crop, 30), by_convention["300w"]), "None explains the model's default"
    assert not np.allclose(by_convention["300w"], by_convention["course"]), "each convention has its own head"
    with torch.no_grad():  # the course map is the one of a model that outputs the course coordinates alone
        course_only = CourseHead(model)
    layer = f"model.{explain.default_layer(model)}"
    assert np.allclose(explain.grad_cam(course_only, crop, 30, layer=layer), by_convention["course"], atol=1e-5)
    with pytest.raises(models.ModelError, match="not 'wild'"):
        explain.grad_cam(model, crop, 30, convention="wild")


class CourseHead(nn.Module):
    """A multi-convention model seen through its course coordinates only (136 outputs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return models.output_layout(self.model).keypoints(self.model(x), "course").flatten(1)


def test_layer_grid_reads_the_size_from_the_model():
    assert explain.layer_grid(models.build_model("fast", input_size=112)) == "14 x 14"
    assert explain.layer_grid(models.build_model("net")) == "14 x 14"  # the reference design's third stage


def test_default_layer_keeps_a_fine_enough_map():
    assert explain.default_layer(models.build_model("fast", input_size=96)) == "features.4"  # the last block at 12 x 12
    assert explain.default_layer(models.build_model("net")) == "features.14"  # the fifth conv's ReLU, 14 x 14
    with pytest.raises(ValueError, match="pass a layer explicitly"):
        explain.default_layer(models.build_model("fast", input_size=16))  # 8 x 8 at most


def test_feature_maps_by_name_and_by_module():
    model = models.build_model("fast")
    maps = explain.feature_maps(model, torch.rand(96, 96), ["features.0", model.features[1]])
    assert {name: m.shape for name, m in maps.items()} == {"features.0": (16, 48, 48), "features.1": (32, 24, 24)}
    assert (maps["features.0"] >= 0).all(), "the first block ends in a ReLU"


# ---------------------------------------------------------------------------------------------------------
# The shipped model on real test faces
# ---------------------------------------------------------------------------------------------------------
EYE_CORNER = 36  # the outer corner of the eye on the image's left (the subject's right eye)
FACES = 5


def eye_and_lower_face_weights(heat: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean heat within a quarter of the eye-corner distance of keypoint 36, and over the lower face: below the
    mouth's mean height, between the leftmost and rightmost keypoints, down to the chin."""
    ys, xs = np.mgrid[0 : heat.shape[0], 0 : heat.shape[1]]
    radius = 0.25 * np.linalg.norm(truth[36] - truth[45])
    near = (xs - truth[EYE_CORNER, 0]) ** 2 + (ys - truth[EYE_CORNER, 1]) ** 2 <= radius**2
    lower = (ys > truth[48:68, 1].mean()) & (ys <= truth[:, 1].max()) & (xs >= truth[:, 0].min()) & (xs <= truth[:, 0].max())
    return float(heat[near].mean()), float(heat[lower].mean())


def test_grad_cam_of_an_eye_corner_looks_at_that_eye(real_data_dir):
    model, meta = models.load_model(inference.SHIPPED_MODEL)
    size = model.input_size
    csv_file, image_dir = data_load.split_paths(real_data_dir, "test")
    names, keypoints = data_load.read_keypoints_csv(csv_file)
    chosen = np.random.default_rng(0).choice(len(names), FACES, replace=False)
    results = []
    for i in chosen:
        image = data_load.read_image(image_dir / names[i])
        crops, matrices = inference.face_crops(image, [data_load.haar_box_from_keypoints(keypoints[i])], size)
        truth = data_load.transform_points(keypoints[i], matrices[0])  # keypoints in crop pixels
        heat = explain.grad_cam(model, crops[0], EYE_CORNER)
        results.append(eye_and_lower_face_weights(heat, truth))
    wins = sum(near > lower for near, lower in results)
    summary = ", ".join(f"{names[i]}: eye {near:.2f} vs lower face {lower:.2f}" for i, (near, lower) in zip(chosen, results))
    print(f"Grad-CAM of keypoint {EYE_CORNER} ({meta['architecture']}, layer {explain.default_layer(model)}): {summary}")
    assert wins >= FACES - 1, f"the eye-corner map should weigh the eye above the lower face on {FACES - 1}+ of {FACES} faces: {summary}"
