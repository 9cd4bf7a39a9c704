"""Tests for notebook_helpers: the notebooks' plots and glue, on synthetic faces (no real data needed)."""
from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torchvision.transforms import Compose  # noqa: E402

import data_load  # noqa: E402
import models  # noqa: E402
from course import notebook_helpers as nh  # noqa: E402
from conftest import MEAN_SHAPE_68, draw_face, face_keypoints  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def synthetic_sample(seed: int = 0, size: tuple[int, int] = (160, 140)) -> dict:
    """A cartoon face (RGB uint8) with its 68 keypoints, as a raw dataset sample."""
    height, width = size
    keypoints = face_keypoints((30, 40, 80, 85))
    image = draw_face(height, width, keypoints, np.random.default_rng(seed))[..., :3].copy()
    return {"image": image, "keypoints": keypoints, "name": "Synthetic_Face_00.jpg"}


# ---------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------
def test_runtime_requirements_skip_notebook_tooling(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("torch>=2.2\n# a comment\n\njupyter>=1.0\nnbval>=0.11\npytest>=7.4\nopencv-python>=4.8,<5  # cv\nNumPy>=2.0\n")
    assert nh.runtime_requirements(requirements) == ["torch>=2.2", "opencv-python>=4.8,<5", "NumPy>=2.0"]


def test_runtime_requirements_of_the_repository_keep_the_libraries():
    wanted = nh.runtime_requirements()
    names = {line.split(">")[0].split("<")[0].split("=")[0] for line in wanted}
    assert {"torch", "opencv-python", "numpy"} <= names
    assert not names & set(nh.NOTEBOOK_TOOLING)


def test_install_requirements_runs_pip_on_the_runtime_requirements(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tqdm>=4\njupyter\n")
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append((command, check)))
    assert nh.install_requirements(requirements) == ["tqdm>=4"]
    (command, check), = calls
    assert command[:4] == [sys.executable, "-m", "pip", "install"] and command[-1] == "tqdm>=4" and check


def test_check_versions_reports_and_rejects(monkeypatch, capsys):
    versions = nh.check_versions()
    assert set(versions) == {"python", "torch", "opencv", "numpy"}
    assert "torch" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="Python"):
        nh.check_versions(min_python=(99, 0))
    with pytest.raises(RuntimeError, match="OpenCV"):
        nh.check_versions(max_opencv_major=0)


def test_quick_settings_use_one_thread():
    import cv2

    before = torch.get_num_threads(), cv2.getNumThreads(), plt.rcParams["figure.dpi"]
    try:
        nh.quick_settings(threads=1, dpi=50)
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and plt.rcParams["figure.dpi"] == 50
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
        plt.rcParams["figure.dpi"] = before[2]


# ---------------------------------------------------------------------------------------------------------
# Images and keypoints
# ---------------------------------------------------------------------------------------------------------
def test_to_display_and_as_pixels_undo_normalisation():
    sample = synthetic_sample()
    normalized = data_load.ToTensor()(data_load.Normalize()(sample))
    assert nh.to_display(normalized["image"]).shape == sample["image"].shape[:2]
    image, keypoints = nh.as_pixels(normalized)
    assert image.shape == sample["image"].shape[:2]
    np.testing.assert_allclose(keypoints, sample["keypoints"], atol=1e-3)
    raw_image, raw_keypoints = nh.as_pixels(sample)  # raw samples pass through
    assert raw_image is not None and np.array_equal(raw_keypoints, sample["keypoints"])


def test_show_helpers_draw_every_panel():
    sample = synthetic_sample()
    fig = nh.show_samples([sample, data_load.Normalize()(sample)], columns=2)
    assert len([ax for ax in fig.axes if ax.images]) == 2
    batch = data_load.collate_samples([data_load.ToTensor()(data_load.Normalize()(data_load.Rescale((64, 64))(sample)))] * 3)
    assert len([ax for ax in nh.show_batch(batch).axes if ax.images]) == 3
    fig = nh.show_images([sample["image"], sample["image"][..., 0]], ["rgb", "gray"], columns=3)
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["rgb", "gray"]
    fig, ax = plt.subplots()
    nh.show_keypoints(ax, sample["image"], sample["keypoints"], highlight={"orange": range(42, 48)})
    assert len(ax.collections) == 2 and len(ax.collections[1].get_offsets()) == 6


def test_show_keypoints_stretches_values_outside_the_unit_range():
    fig, ax = plt.subplots()
    nh.show_keypoints(ax, np.linspace(-3, 5, 100).reshape(10, 10).astype(np.float32))
    assert ax.images[0].get_clim() == (-3, 5)


def test_keypoint_map_numbers_all_68_points():
    ax = nh.plot_keypoint_map(MEAN_SHAPE_68 * 300)
    assert sorted(int(t.get_text()) for t in ax.texts) == list(range(68))
    for text in ax.texts:  # each number sits beside its own point
        np.testing.assert_allclose(text.xy, MEAN_SHAPE_68[int(text.get_text())] * 300)
        assert text.get_anncoords() == "offset points"
    assert ax.yaxis_inverted()
    assert len(ax.get_legend().get_texts()) == len(nh.KEYPOINT_GROUPS)


def test_keypoint_groups_cover_each_point_once():
    covered = sorted(i for indices, _ in nh.KEYPOINT_GROUPS.values() for i in indices)
    assert covered == list(range(68))


def test_image_sizes_read_the_headers(tiny_data):
    sizes = nh.image_sizes(tiny_data.path / "training", tiny_data.training_names[:3])
    for (width, height), name in zip(sizes, tiny_data.training_names[:3]):
        image = data_load.read_image(tiny_data.path / "training" / name)
        assert (height, width) == image.shape[:2]


# ---------------------------------------------------------------------------------------------------------
# Keypoints stay on their pixels
# ---------------------------------------------------------------------------------------------------------
def test_marker_is_found_where_it_was_painted():
    sample = synthetic_sample()
    painted = nh.paint_marker(sample, 30)
    np.testing.assert_allclose(nh.marker_centre(painted["image"]), sample["keypoints"][30], atol=0.6)
    assert nh.marker_centre(sample["image"]) is None
    with pytest.raises(ValueError, match="RGB"):
        nh.marker_centre(painted["image"][..., 0])


@pytest.mark.parametrize(
    "transform",
    [
        data_load.Rescale(100),
        Compose([data_load.Rescale(150), data_load.RandomCrop(128, rng=np.random.default_rng(1))]),
        data_load.RandomAffine(rotation=30, rng=np.random.default_rng(2)),
        data_load.FaceCrop(96),
    ],
)
def test_correct_transforms_keep_the_marker_on_its_keypoint(transform):
    assert nh.marker_offset(transform, synthetic_sample(), index=30) < 1.0


def test_flip_moves_the_marker_to_the_swapped_label():
    flip = data_load.RandomHorizontalFlip(p=1.0)
    sample = synthetic_sample()
    assert nh.marker_offset(flip, sample, index=45, expect_index=36) < 1.0
    assert nh.marker_offset(flip, sample, index=45) > 20  # without the label swap the point is on the other eye


def test_a_wrong_transform_is_caught():
    def shift_image_only(sample):  # moves the pixels but forgets the keypoints
        return {**sample, "image": np.roll(sample["image"], 7, axis=1)}

    assert nh.marker_offset(shift_image_only, synthetic_sample()) == pytest.approx(7, abs=0.6)


def test_marker_offset_is_infinite_when_the_marker_leaves_the_picture():
    def blank(sample):
        return {**sample, "image": np.zeros_like(sample["image"])}

    assert nh.marker_offset(blank, synthetic_sample()) == float("inf")


# ---------------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------------
def test_layer_shapes_of_the_course_net():
    net = models.Net()  # the reference design: strided convolutions halve a 112 px input four times
    net.train()
    rows = nh.layer_shapes(net, (1, 1, 112, 112))
    shapes = {name: shape for name, _, shape, _ in rows}
    assert shapes["features.0"] == (1, 16, 56, 56)
    assert shapes["features.3"] == (1, 32, 28, 28)
    assert shapes["features.21"] == (1, 32, 7, 7)
    assert rows[-1][2] == (1, 136)
    assert sum(params for *_, params in rows) == models.count_parameters(net)
    assert net.training  # the mode is restored


def test_print_layer_shapes(capsys):
    nh.print_layer_shapes(models.build_model("fast"), (1, 1, 96, 96))
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("input") and "(1, 136)" in out


def test_first_conv_and_filter_grid():
    net = models.Net()
    conv = nh.first_conv(net)
    assert conv is net.features[0]
    fig = nh.plot_filters(conv.weight, columns=8)
    assert len([ax for ax in fig.axes if ax.images]) == conv.out_channels == 16
    with pytest.raises(ValueError, match="Conv2d"):
        nh.first_conv(torch.nn.Linear(2, 2))


def test_feature_map_grid_and_heatmap():
    maps = {"features.0": np.random.default_rng(0).random((16, 12, 12)), "features.1": np.random.default_rng(1).random((4, 6, 6))}
    image = np.random.default_rng(2).random((24, 24)).astype(np.float32)
    fig = nh.plot_feature_maps(image, maps, count=8)
    assert len([ax for ax in fig.axes if ax.images]) == 2 + 8 + 4  # an input per row, then the maps there are
    fig, ax = plt.subplots()
    nh.show_heatmap(ax, image, np.linspace(0, 1, 24 * 24).reshape(24, 24), point=(5.0, 7.0), title="heat")
    assert len(ax.images) == 2 and ax.get_title() == "heat" and len(ax.collections) == 1

def test_loss_curves_have_the_expected_shapes():
    curves = nh.loss_curves(input_size=224, max_error_px=20, steps=41)
    errors, mse, mse_grad = curves["mse"]
    assert errors[0] == 0 and errors[-1] == 20
    np.testing.assert_allclose(mse, (errors / 112) ** 2, rtol=1e-6)  # MSE on normalised coordinates
    np.testing.assert_allclose(mse_grad, 2 * errors / 112**2, rtol=1e-6, atol=1e-12)
    _, smooth, smooth_grad = curves["smoothl1"]
    assert smooth_grad[-1] == pytest.approx(smooth_grad[-2])  # L1 beyond beta: a constant pull
    _, wing, wing_grad = curves["wing"]
    assert wing_grad[2] > wing_grad[10] > wing_grad[30] > 0  # strongest pull on small errors
    assert all(np.all(np.diff(values) >= 0) for _, values, _ in curves.values())
    assert len(nh.plot_loss_curves(max_error_px=20).axes) == 2


def test_plot_history():
    history = {"epoch": [1, 2, 3], "train_loss": [3.0, 2.0, 1.5], "val_loss": [3.2, 2.5, 2.0], "val_nme_io": [0.3, 0.2, 0.15],
               "seconds": [1, 1, 1]}
    left, right = nh.plot_history(history).axes
    assert len(left.lines) == 2 and len(right.lines) == 1


# ---------------------------------------------------------------------------------------------------------
# Predictions and pictures
# ---------------------------------------------------------------------------------------------------------
def test_face_window_stays_inside_the_image():
    keypoints = face_keypoints((5, 10, 50, 60))
    x0, y0, x1, y1 = nh.face_window(keypoints, (80, 70))
    assert (x0, y0) == (0, 0) and x1 <= 70 and y1 <= 80
    assert x0 <= keypoints[:, 0].min() and x1 >= keypoints[:, 0].max()


def test_show_predictions_draws_truth_and_prediction():
    sample = synthetic_sample()
    fig = nh.show_predictions([sample["image"]] * 2, [sample["keypoints"], None], [sample["keypoints"] + 2, sample["keypoints"]],
                              titles=["both", "prediction only"], columns=2)
    first, second = [ax for ax in fig.axes if ax.images]
    assert len(first.collections) == 2 and len(second.collections) == 1
    assert fig.legends


def test_draw_boxes_and_crop_square():
    image = np.zeros((100, 120, 3), np.uint8)
    drawn = nh.draw_boxes(image, [(10, 20, 30, 30)], colour=(255, 0, 0), thickness=1)
    assert drawn[20, 25, 0] > 200 and image.max() == 0  # anti-aliased edge
    x, y, w, h = nh.crop_square_box((10, 20, 30, 30))
    assert w == h == pytest.approx(30 * data_load.CROP_SCALE)
    assert y + h / 2 == pytest.approx(35 + 30 * data_load.CROP_SHIFT)
    assert nh.crop_square_box((10, 20, 30, 30), scale=1.0, shift=0.0) == pytest.approx([10, 20, 30, 30])


def test_predict_with_crop_matches_the_pipeline_crop():
    from pipeline import inference

    model = models.build_model("fast", input_size=32, widths=(4, 8), depths=(1,), head_channels=4, hidden=8).eval()
    sample = synthetic_sample()
    box = data_load.haar_box_from_keypoints(sample["keypoints"])
    ours = nh.predict_with_crop(model, [sample["image"]], [box], data_load.CROP_SCALE, data_load.CROP_SHIFT)
    theirs = inference.predict_in_boxes(model, [sample["image"]], [box])
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert ours.shape == (1, 68, 2)


def test_on_checkerboard_shows_transparency():
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[:12, :12] = (255, 0, 0, 255)
    out = nh.on_checkerboard(rgba, square=12)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert set(np.unique(out[12:, 12:])) <= {150, 200}


# ---------------------------------------------------------------------------------------------------------
# Unfinished work in a notebook: one line that says what to do
# ---------------------------------------------------------------------------------------------------------
def run_cells(*sources: str) -> list[list[dict]]:
    """Run code cells in a fresh kernel (errors allowed) and return each cell's outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(notebook, timeout=120, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(nh.REPO_DIR)}}).execute()
    return [cell.outputs for cell in notebook.cells]


def test_a_todo_not_done_shows_as_one_line_that_names_it_and_the_cell_still_fails():
    outputs = run_cells(
        "from course import notebook_helpers as nh\nprint(nh.short_todo_errors())",
        "import data_load\ndef stub(sample):\n    raise NotImplementedError('Normalize.__call__ in data_load.py is not written yet: fill in its TODO (notebook 1)')\nstub({})",
        'nh.needs(globals(), "data_transform", "*Your turn: the transform pipeline* above")',
        "print(model)",
    )
    assert outputs[0][0]["text"].strip() == "True"
    errors = [[o for o in cell if o["output_type"] == "error"] for cell in outputs[1:]]
    assert all(len(e) == 1 for e in errors), "each failing cell must still report its error"
    stub, needs, missing = (e[0] for e in errors)
    assert stub["traceback"] == ["NotImplementedError: a TODO is not done yet. Normalize.__call__ in data_load.py is not "
                                 "written yet: fill in its TODO (notebook 1)"]
    assert needs["traceback"] == ["NotImplementedError: a TODO is not done yet. data_transform is not defined yet: do the "
                                  "TODO of *Your turn: the transform pipeline* above, run its cell, then this one."]
    assert len(missing["traceback"]) == 1 and "run the cells above in order" in missing["traceback"][0]


def test_a_name_error_inside_a_module_keeps_its_traceback():
    outputs = run_cells(
        "from course import notebook_helpers as nh\nnh.short_todo_errors()\nimport types\n"
        "module = types.ModuleType('student')\nexec(compile('def f():\\n    return undefined_name', '/tmp/student_module.py', 'exec'), module.__dict__)",
        "module.f()",
    )
    error = next(o for o in outputs[1] if o["output_type"] == "error")
    assert len(error["traceback"]) > 1 and "run the cells above" not in "".join(error["traceback"])


def test_outside_ipython_there_is_nothing_to_set_up():
    assert nh.short_todo_errors() is False
    nh.needs({"x": 1}, "x", "anything")
    with pytest.raises(NotImplementedError, match="^y is not defined yet: do the TODO of the cell above, run its cell, then this one.$"):
        nh.needs({}, "y", "the cell above")


def test_signed_values_are_drawn_on_a_scale_centred_on_zero():
    fig, ax = plt.subplots()
    nh.show_signed(ax, np.array([[-1.0, 0.5], [0.0, 0.25]]), title="a kernel")
    image = ax.images[0]
    assert image.get_clim() == (-1.0, 1.0) and image.get_cmap().name == "RdBu_r"


def test_the_numbers_of_the_lip_corners_land_on_opposite_sides():
    points = MEAN_SHAPE_68 * 500
    offsets = nh.label_offsets(points)
    assert np.allclose(np.linalg.norm(offsets, axis=1), 7.0)
    for outer, inner in ((48, 60), (54, 64)):
        labels = points[[outer, inner]] + offsets[[outer, inner]] * [1, -1]  # back to image directions
        assert np.linalg.norm(labels[0] - labels[1]) > np.linalg.norm(points[outer] - points[inner]) + 7, (outer, inner)
    assert offsets[48, 0] < 0 < offsets[60, 0] and offsets[54, 0] > 0 > offsets[64, 0]


def test_wide_pictures_get_panels_of_their_shape():
    fig = nh.show_images([np.zeros((100, 300, 3), np.uint8), np.zeros((60, 300, 3), np.uint8)], columns=2, size=3)
    assert tuple(fig.get_size_inches()) == pytest.approx((6.0, 1.0))  # as high as the taller picture needs
    fig = nh.show_images([np.zeros((80, 40), np.uint8)], columns=3, size=2)
    assert tuple(fig.get_size_inches()) == pytest.approx((2.0, 4.0))
