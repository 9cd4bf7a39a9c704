"""Training on faces in the wild: 300-W and negative crop caches, photo augmentations, the multi-convention loss
with a face score, the wild presets, and evaluation on held-out 300-W faces."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from pipeline import data_300w
import data_load
from pipeline import evaluation
from pipeline import no_faces
from pipeline import trainer
from data_load import AugmentConfig, CropDataset, mix_crops, photo_effects
from models import OutputLayout, build_model
from conftest import interrupted_at_call


def assert_one_line(message: str, *must_contain: str) -> None:
    assert message.strip() and "\n" not in message.strip(), f"not one line: {message!r}"
    for text in must_contain:
        assert text in message, f"{text!r} not in {message!r}"


# ---------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------
def test_photo_effects_are_off_by_default_and_change_pixels_when_on():
    rng = np.random.default_rng(0)
    crop = rng.uniform(0.2, 0.8, size=(48, 48)).astype(np.float32)
    plain = AugmentConfig()
    assert plain.blur == plain.illumination == plain.occlusion == 0
    np.testing.assert_array_equal(photo_effects(crop, plain, rng), crop)
    for effect in ({"blur": 1.0}, {"illumination": 0.4}, {"occlusion": 1.0}):
        out = photo_effects(crop, dataclasses.replace(plain, **effect), np.random.default_rng(1))
        assert out.shape == crop.shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1
        assert np.abs(out - crop).mean() > 0.005, effect


def test_blur_smooths_and_occlusion_covers_a_rectangle():
    rng = np.random.default_rng(0)
    crop = rng.uniform(0, 1, size=(64, 64)).astype(np.float32)
    blurred = photo_effects(crop, AugmentConfig(blur=1.0), np.random.default_rng(2))
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.7 * np.abs(np.diff(crop, axis=1)).mean()
    changed = photo_effects(crop, AugmentConfig(occlusion=1.0), np.random.default_rng(3)) != crop
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    low, high = data_load.OCCLUSION_SIDES
    assert low * 64 - 1 <= len(rows) <= high * 64 + 1 and low * 64 - 1 <= len(cols) <= high * 64 + 1
    assert changed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].mean() > 0.9  # one filled rectangle


def test_photo_effects_leave_keypoints_where_they_were(tiny_data):
    crops = data_load.cut_context_crops(data_load.FacialKeypointsDataset(*data_load.split_paths(tiny_data.path, "training")), 48)
    plain = CropDataset(crops, 48, augment=AugmentConfig(0, 0, 0, 0, 0, 0), seed=0)
    wild = CropDataset(crops, 48, augment=AugmentConfig(0, 0, 0, 0, 0, 0, blur=1.0, illumination=0.3, occlusion=1.0), seed=0)
    for i in range(3):
        torch.testing.assert_close(plain[i]["keypoints"], wild[i]["keypoints"])
        assert not torch.equal(plain[i]["image"], wild[i]["image"])


# ---------------------------------------------------------------------------------------------------------
# Crop sets
# ---------------------------------------------------------------------------------------------------------
def test_300w_crops_put_the_keypoints_where_the_face_is(tiny_300w, tmp_path):
    crops = data_300w.load_300w_crops("training", 48, tiny_300w, cache_dir=tmp_path / "cache")
    assert crops["images"].shape == (7, data_load.context_size(48), data_load.context_size(48))
    dataset = CropDataset(crops, 48)
    for i in range(len(dataset)):
        item = dataset[i]
        points = data_load.denormalize_keypoints(item["keypoints"].numpy(), 48)
        # the framing is the course's: the face's keypoint box fills the middle of the network's crop
        assert 8 < points[:, 0].min() < points[:, 0].max() < 40 and 6 < points[:, 1].min() < points[:, 1].max() < 44
        # the cartoon face is drawn on its keypoints: the skin inside is brighter than the background outside
        inside = item["image"][0, int(points[:, 1].mean()), int(points[:, 0].mean())]
        assert inside > item["image"][0, 1, 1]
    again = data_300w.load_300w_crops("training", 48, tiny_300w, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again["images"], crops["images"])
    assert len(list((tmp_path / "cache").glob("crops_300w_48_*.npz"))) == 1
    held_out = data_300w.load_300w_crops("validation", 48, tiny_300w, cache_dir=tmp_path / "cache")
    assert len(held_out["names"]) == 1 and held_out["names"][0] not in set(crops["names"])


def test_random_boxes_stay_inside_the_picture():
    boxes = no_faces.random_boxes((120, 300, 3), 200, np.random.default_rng(0))
    x, y, w, h = boxes.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 300 + 1e-3).all() and (y + h <= 120 + 1e-3).all()
    assert (w == h).all() and w.min() >= no_faces.MIN_BOX_SIDE - 1e-3 and w.max() <= 120 + 1e-3


def test_negative_crops_count_their_boxes(tiny_dataset, tmp_path):
    pictures = no_faces.no_face_pictures("training", tiny_dataset)
    crops = no_faces.negative_crops(pictures, 32)
    skimage = sum(name.startswith("skimage:") for name, _ in pictures)
    expected = skimage * no_faces.BOXES_PER_SKIMAGE_PICTURE + (len(pictures) - skimage) * no_faces.BOXES_PER_BACKGROUND
    assert len(crops["images"]) == expected and crops["images"].shape[1:] == (data_load.context_size(32),) * 2
    cached = no_faces.load_negative_crops("training", 32, tiny_dataset, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached["images"], crops["images"])


def test_mix_crops_labels_every_crop():
    def part(n: int, value: int) -> dict:
        return {"images": np.full((n, 8, 8), value, np.uint8), "keypoints": np.zeros((n, 68, 2), np.float32), "names": np.array([f"{value}"] * n)}

    mixed = mix_crops([(part(3, 1), 1, True), (part(2, 2), 0, True), (part(4, 3), 0, False)])
    np.testing.assert_array_equal(mixed["convention"], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(mixed["face"], [1, 1, 1, 1, 1, 0, 0, 0, 0])
    item = CropDataset(mixed, 8)[4]
    assert item["convention"].item() == 0 and item["face"].item() == 1.0 and item["face"].dtype == torch.float32
    with pytest.raises(ValueError, match="sizes"):
        mix_crops([(part(1, 1), 0, True), ({**part(1, 1), "images": np.zeros((1, 9, 9), np.uint8)}, 0, True)])


# ---------------------------------------------------------------------------------------------------------
# The loss
# ---------------------------------------------------------------------------------------------------------
def packed(keypoints: torch.Tensor, convention: list[int], face: list[float]) -> torch.Tensor:
    return trainer.training_target({"keypoints": keypoints, "convention": torch.tensor(convention), "face": torch.tensor(face)})


def test_layout_loss_compares_each_face_with_its_own_convention():
    layout = OutputLayout(68, ("300w", "course"), face_score=False)
    loss = trainer.LayoutLoss(torch.nn.L1Loss(), layout)
    truth = torch.rand(2, 68, 2) * 2 - 1
    # face 0 is labelled in 300w (head 0), face 1 in course (head 1); the other head holds garbage
    output = torch.stack([torch.cat([truth[0].flatten(), torch.full((136,), 5.0)]), torch.cat([torch.full((136,), 5.0), truth[1].flatten()])])
    assert loss(output, packed(truth, [0, 1], [1, 1])).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(output, packed(truth, [1, 0], [1, 1])).item() > 3.0
    expected = (5.0 - truth[1].flatten()).abs().mean()  # face 1 compared with the wrong head
    assert loss(output, packed(truth, [0, 0], [1, 1])).item() == pytest.approx(expected.item() / 2, rel=1e-5)


def test_layout_loss_teaches_the_face_score_and_ignores_the_keypoints_of_negatives():
    layout = OutputLayout(68, ("300w", "course"), face_score=True)
    loss = trainer.LayoutLoss(torch.nn.L1Loss(), layout, face_weight=2.0)
    truth = torch.zeros(2, 68, 2)
    output = torch.zeros(2, layout.width)
    output[1, :272] = 7.0  # the negative's keypoints are far off: they must not count
    output[:, -1] = torch.tensor([3.0, -3.0])  # confident and right
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([3.0, -3.0]), torch.tensor([1.0, 0.0]))
    assert loss(output, packed(truth, [0, 0], [1, 0])).item() == pytest.approx(2.0 * bce.item(), rel=1e-5)
    output[:, -1] = torch.tensor([-3.0, 3.0])  # confident and wrong
    assert loss(output, packed(truth, [0, 0], [1, 0])).item() > 10 * 2.0 * bce.item()
    # a batch of negatives only still gives a finite, differentiable loss
    only_negatives = loss(output.requires_grad_(), packed(truth, [0, 0], [0, 0]))
    only_negatives.backward()
    assert torch.isfinite(only_negatives)


def test_training_target_of_a_course_batch_is_its_flat_keypoints():
    keypoints = torch.rand(3, 68, 2)
    torch.testing.assert_close(trainer.training_target({"keypoints": keypoints}), keypoints.flatten(1))
    assert packed(keypoints, [1, 0, 1], [1, 0, 1]).shape == (3, 138)


# ---------------------------------------------------------------------------------------------------------
# The flip offset: labels that sit off the face's mirror-symmetric position
# ---------------------------------------------------------------------------------------------------------
def symmetric_face(size: int = 64) -> np.ndarray:
    """A 68-point face in normalised crop units whose mirror image (``inference._mirrored``) is itself."""
    from conftest import MEAN_SHAPE_68
    from pipeline.inference import _mirrored

    face = (MEAN_SHAPE_68 * 1.2 - 0.6).astype(np.float32)[None]
    return ((face + _mirrored(face.copy(), size)) / 2)[0]


def test_a_mirrored_crop_is_moved_back_to_its_conventions_side():
    from pipeline.inference import _mirrored

    face = symmetric_face()
    offset = 0.02
    labelled = face + offset * (face[45] - face[36])  # labels right of the symmetric place by 0.02 eye-corner distances
    # the mirror image of such labels sits as far on the left; flip_corrected puts it back
    mirrored = _mirrored(labelled[None].copy(), 64)[0]
    np.testing.assert_allclose(mirrored, face - offset * (face[45] - face[36]), atol=1e-6)
    back = trainer.flip_corrected(torch.from_numpy(mirrored)[None], torch.ones(1), torch.tensor([offset]))[0]
    np.testing.assert_allclose(back.numpy(), labelled, atol=1e-5)
    unflipped = trainer.flip_corrected(torch.from_numpy(labelled)[None], torch.zeros(1), torch.tensor([offset]))[0]
    np.testing.assert_allclose(unflipped.numpy(), labelled)
    # and inference does the same for a mirrored prediction
    np.testing.assert_allclose(_mirrored(_mirrored(labelled[None].copy(), 64), 64, offset)[0], labelled + 2 * offset * (labelled[45] - labelled[36]), atol=1e-5)


class OffsetRunner:
    """A runner that places every face (mirrored or not) at ``face`` moved right by ``offset`` eye-corner distances,
    as a network that learned a convention with that flip offset does."""

    def __init__(self, face: np.ndarray, offset: float, recorded: float) -> None:
        self.row = (face + offset * (face[45] - face[36])).ravel()
        self.layout = OutputLayout(68, ("300w",), False, (recorded,) if recorded else ())
        self.input_size, self.num_keypoints = 64, 68

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.repeat(self.row[None], len(batch), axis=0)


@pytest.mark.parametrize("offset", [0.0, 0.025])
def test_flip_averaging_keeps_a_learned_flip_offset(offset):
    from pipeline.inference import predict

    face = symmetric_face()
    crops = np.zeros((2, 64, 64), np.float32)
    expected = data_load.denormalize_keypoints(face + offset * (face[45] - face[36]), 64)
    # without the recorded offset the flip-averaged points fall back to the symmetric place
    plain = predict(OffsetRunner(face, offset, 0.0), crops, flip_average=True)
    np.testing.assert_allclose(plain.keypoints[0], data_load.denormalize_keypoints(face, 64), atol=1e-3)
    recorded = predict(OffsetRunner(face, offset, offset), crops, flip_average=True)
    np.testing.assert_allclose(recorded.keypoints[0], expected, atol=1e-3)
    assert recorded.flip_error[0] == pytest.approx(0.0, abs=1e-6)  # a face that agrees with its mirror image


def test_the_learned_flip_offset_is_the_labels_own():
    # a network that places every face at the labels' side (as it learns to from unmirrored crops): the loss of
    # mirrored crops is lowest when the flip offset is the labels' own
    face = torch.from_numpy(symmetric_face())
    true_offset = 0.03
    labels = face + true_offset * (face[45] - face[36])
    mirrored_labels = face - true_offset * (face[45] - face[36])
    layout = OutputLayout(68, ("300w", "course"), face_score=False)
    loss = trainer.LayoutLoss(torch.nn.L1Loss(), layout)
    output = torch.cat([labels.flatten(), labels.flatten()])[None].repeat(2, 1)
    target = trainer.training_target({"keypoints": torch.stack([labels, mirrored_labels]), "convention": torch.tensor([1, 1]),
                                        "face": torch.tensor([1.0, 1.0]), "flipped": torch.tensor([0.0, 1.0])})
    values = {}
    for b in (0.0, 0.015, true_offset, 0.045):
        with torch.no_grad():
            loss.flip_offsets.values[:] = b
        values[b] = loss(output, target).item()
    assert min(values, key=values.get) == true_offset and values[true_offset] == pytest.approx(0.0, abs=1e-6)
    loss(output, target).backward()  # the offsets learn through the loss
    assert loss.flip_offsets.values.grad is not None
    assert trainer.LayoutLoss(torch.nn.L1Loss(), layout, learn_flip_offsets=False)(output, target).item() == pytest.approx(values[0.0])


def test_crops_with_labels_say_whether_they_were_mirrored():
    crops = {"images": np.zeros((4, 20, 20), np.uint8), "keypoints": np.zeros((4, 68, 2), np.float32), "names": np.array(["a"] * 4),
             "convention": np.zeros(4, np.int64), "face": np.ones(4, np.float32)}
    always = CropDataset(crops, 8, augment=AugmentConfig(0, 0, 0, flip=1.0, brightness=0, contrast=0), seed=0)
    never = CropDataset(crops, 8, augment=AugmentConfig(0, 0, 0, flip=0.0, brightness=0, contrast=0), seed=0)
    assert always[0]["flipped"].item() == 1.0 and never[0]["flipped"].item() == 0.0
    assert "flipped" not in CropDataset({k: crops[k] for k in ("images", "keypoints", "names")}, 8)[0]


def test_a_model_saves_and_loads_its_flip_offsets(tmp_path):
    from models import load_model, save_model

    model = build_model("fast", conventions=("300w", "course"), face_score=True, input_size=32, widths=(8, 16, 24, 32), head_channels=8, hidden=32)
    assert OutputLayout.from_meta({"num_keypoints": 68}).flip_offset() == 0.0
    model.flip_offsets = (0.007, 0.024)
    save_model(model, tmp_path / "m.pt")
    loaded, meta = load_model(tmp_path / "m.pt")
    assert meta["flip_offsets"] == [0.007, 0.024] and loaded.flip_offsets == (0.007, 0.024)
    from models import output_layout

    assert output_layout(loaded).flip_offset("course") == 0.024 and output_layout(loaded).flip_offset() == 0.007
    with pytest.raises(Exception):
        OutputLayout(68, ("300w", "course"), True, (0.01,))


# ---------------------------------------------------------------------------------------------------------
# Presets and training
# ---------------------------------------------------------------------------------------------------------
def test_wild_presets_default_to_300w_with_a_course_head_and_a_face_score():
    for name in ("wild", "wild-cpu"):
        config = trainer.PRESETS[name]
        assert config.conventions[0] == "300w" and "course" in config.conventions and config.face_score and config.wild_repeat > 0
        assert config.init == trainer.COURSE_MODEL
    assert (trainer.REPO_DIR / trainer.COURSE_MODEL).is_file()
    photo = AugmentConfig(**trainer.PHOTO_AUGMENT)
    assert photo.rotation > AugmentConfig(**trainer.FAST_AUGMENT).rotation and photo.blur and photo.occlusion
    for name in ("cpu", "full"):
        config = trainer.PRESETS[name]
        assert config.conventions == ["course"] and not config.face_score and config.wild_repeat == 0


def test_wild_training_learns_both_heads_and_the_face_score(tiny_dataset, tiny_300w, tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr(no_faces, "BOXES_PER_SKIMAGE_PICTURE", 1)
    config = dataclasses.replace(
        trainer.PRESETS["wild-cpu"], model_kwargs={**trainer.FAST_MODEL, "input_size": 32}, epochs=3, batch_size=8, lr=3e-3, limit=8,
        augment=trainer.PHOTO_AUGMENT, init=None,
    )
    model, history = trainer.train(config, str(tiny_dataset), tmp_path / "run", progress=False, log=lambda _: None, data_300w=str(tiny_300w))
    assert model.conventions == ("300w", "course") and model.face_score
    assert history["epoch"] == [1, 2, 3] and len(history["val_300w_nme_io"]) == 3
    assert history["train_loss"][-1] < history["train_loss"][0]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["meta"]["conventions"] == ["300w", "course"] and state["meta"]["face_score"] is True


def test_a_wild_preset_without_300w_data_says_what_to_do(tiny_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FKP_300W", raising=False)
    code = trainer.main(["--preset", "wild-cpu", "--data", str(tiny_dataset), "--out", str(tmp_path / "m.pt"), "--run-dir", str(tmp_path / "r"), "--no-progress"])
    assert code == 1
    assert_one_line(capsys.readouterr().err, "--data-300w", "FKP_300W")
    assert not (tmp_path / "m.pt").exists()


# ---------------------------------------------------------------------------------------------------------
# Evaluation on 300-W faces
# ---------------------------------------------------------------------------------------------------------
def test_region_errors_measure_each_region_alone():
    rng = np.random.default_rng(0)
    truth = np.stack([data_load.transform_points(np.asarray(rng.uniform(0, 100, (68, 2)), np.float32), np.eye(2, 3)) for _ in range(3)])
    io = evaluation.interocular_distance(truth)
    predicted = truth.copy()
    predicted[:, 27:36, 1] += 0.1 * io[:, None]  # the nose 0.1 inter-ocular distances too low, all else perfect
    regions = evaluation.region_errors(predicted, truth)
    assert regions["nose"] == pytest.approx(0.1) and all(regions[r] == 0 for r in ("jaw", "brows", "eyes", "mouth"))
    assert sum(len(p) for p in evaluation.REGIONS.values()) == 68


class Oracle(torch.nn.Module):
    """A 'model' with the wild layout that outputs the mean shape shifted: its 300-W head one way, its course head
    another; used through predict_in_boxes like a real one."""

    def __init__(self) -> None:
        super().__init__()
        self.input_size, self.num_keypoints, self.conventions, self.face_score = 32, 68, ("300w", "course"), True
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        return torch.cat([torch.zeros(n, 136), torch.full((n, 136), 0.5), torch.ones(n, 1)], dim=1) + self.weight


def test_evaluate_300w_asks_for_the_300w_convention(tiny_300w, tmp_path):
    metrics, per_face, names = evaluation.evaluate_300w(Oracle(), tiny_300w)
    course, _, _ = evaluation.evaluate_300w(Oracle(), tiny_300w, convention="course")
    assert metrics["n"] == len(per_face) == len(names) == 1
    assert set(metrics["regions"]) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert metrics["nme_io"] != course["nme_io"]  # the two heads answer differently


def test_evaluate_main_on_300w_writes_the_figures(tiny_300w, tmp_path, capsys):
    model = build_model("fast", conventions=("300w", "course"), face_score=True, input_size=32)
    from models import save_model

    save_model(model, tmp_path / "m.pt")
    out, figure = tmp_path / "e.json", tmp_path / "figures" / "worst.png"
    arguments = ["--dataset", "300w", "--data", str(tiny_300w), "--model", str(tmp_path / "m.pt"), "--json", str(out)]
    assert evaluation.main([*arguments, "--figure", str(figure)]) == 0
    result = json.loads(out.read_text())
    for key in ("n", "nme_io", "nme_io_median", "fr10", "auc08", "regions", "yaw"):
        assert key in result
    assert result["n"] == 1 and "300w convention" in result["predictor"]
    assert sum(b["n"] for b in result["yaw"].values()) == 1
    printed = capsys.readouterr().out
    assert "regions: jaw" in printed and "0-15 deg:" in printed and f"wrote the 1 worst faces to {figure}" in printed
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(figure.parent.glob(".*tmp"))  # written through a temporary file, which is gone
    # a folder in place of the figure's file: one line, the JSON kept, no temporary file left
    assert evaluation.main([*arguments, "--figure", str(figure.parent)]) == 1
    assert_one_line(capsys.readouterr().err, "--figure")
    assert json.loads(out.read_text())["n"] == 1 and not list(figure.parent.parent.glob(".*tmp"))
    # the same path for both outputs is refused before anything is written over
    before = out.read_bytes()
    assert evaluation.main([*arguments, "--figure", str(out)]) == 1
    assert_one_line(capsys.readouterr().err, "--json", "--figure")
    assert out.read_bytes() == before


def test_yaw_from_the_keypoints_reads_the_nose_between_the_jaw_ends():
    shape = np.zeros((1, 68, 2))
    shape[0, 0], shape[0, 16] = (0.0, 0.0), (100.0, 0.0)
    for share, degrees in ((0.5, 0.0), (0.75, 30.0), (0.25, -30.0), (1.0, 90.0), (1.3, 90.0)):
        shape[0, 30] = (100 * share, 40.0)
        assert evaluation.yaw_degrees(shape)[0] == pytest.approx(degrees, abs=1e-9)
    # head roll does not count: the same face turned 40 degrees in the picture keeps its yaw
    shape[0, 30] = (75.0, 40.0)
    angle = np.radians(40)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    rolled = shape @ rotation.T + 17
    assert evaluation.yaw_degrees(rolled)[0] == pytest.approx(30.0, abs=1e-9)
    mirrored = shape.copy()
    mirrored[..., 0] = 100 - mirrored[..., 0]
    mirrored[0, [0, 16]] = mirrored[0, [16, 0]]  # a mirrored face's jaw ends swap their labels too
    assert evaluation.yaw_degrees(mirrored)[0] == pytest.approx(-30.0, abs=1e-9)


def test_errors_by_yaw_put_each_face_in_its_bin():
    shapes = np.zeros((4, 68, 2))
    shapes[:, 16, 0] = 100.0
    for i, share in enumerate((0.5, 0.6, 0.4, 0.9)):  # 0, +11.5, -11.5, +53 degrees
        shapes[i, 30, 0] = 100 * share
    per_face = np.array([0.02, 0.04, 0.06, 0.2])
    bins = evaluation.errors_by_yaw(per_face, shapes)
    assert list(bins) == ["0-15 deg", "15-30 deg", "30-90 deg"]
    assert bins["0-15 deg"]["n"] == 3 and bins["0-15 deg"]["nme_io"] == pytest.approx(0.04) and bins["0-15 deg"]["fr10"] == 0
    assert bins["15-30 deg"] == {"n": 0, "nme_io": None, "fr10": None}  # plain JSON, no NaN
    assert bins["30-90 deg"] == {"n": 1, "nme_io": pytest.approx(0.2), "fr10": 1.0}


def test_evaluate_300w_of_a_course_only_model_says_which_conventions_it_has(tiny_300w, tmp_path, capsys):
    from models import save_model

    save_model(build_model("fast", input_size=32), tmp_path / "old.pt")
    arguments = ["--dataset", "300w", "--data", str(tiny_300w), "--model", str(tmp_path / "old.pt"), "--figure", str(tmp_path / "worst.png")]
    assert evaluation.main(arguments) == 1
    assert_one_line(capsys.readouterr().err, "course", "300w")
    assert evaluation.main([*arguments, "--convention", "course"]) == 0


# ---------------------------------------------------------------------------------------------------------
# Starting from a course-only model
# ---------------------------------------------------------------------------------------------------------
def test_initialize_from_a_course_model_spreads_its_head_over_both_conventions(tmp_path):
    from models import save_model

    old = build_model("fast", input_size=32)
    torch.nn.init.normal_(old.head[-1].weight)
    save_model(old, tmp_path / "course.pt")
    new = build_model("fast", conventions=("300w", "course"), face_score=True, input_size=32)
    fresh_face_row = new.head[-1].weight[-1].detach().clone()
    copied = trainer.initialize_from(new, tmp_path / "course.pt")
    assert "head.3.weight" in copied and len(copied) == len(old.state_dict())
    x = torch.rand(2, 1, 32, 32)
    old.eval(), new.eval()
    with torch.no_grad():
        before, after = old(x), new(x)
    torch.testing.assert_close(after[:, :136], before)  # 300w head starts as the course head
    torch.testing.assert_close(after[:, 136:272], before)
    torch.testing.assert_close(new.head[-1].weight[-1], fresh_face_row)  # the face score starts fresh


def test_initialize_from_another_design_says_so(tmp_path):
    from models import ModelError, save_model

    save_model(build_model("fast_heatmap", input_size=32), tmp_path / "other.pt")
    with pytest.raises(ModelError, match="shares no weights"):
        trainer.initialize_from(build_model("fast", input_size=32), tmp_path / "other.pt")
    with pytest.raises(ModelError, match="does not exist"):
        trainer.initialize_from(build_model("fast", input_size=32), tmp_path / "missing.pt")


def test_augment_option_changes_only_the_named_strengths(capsys):
    args = trainer.build_parser().parse_args(["--preset", "wild", "--augment", "blur=0,rotation=12.5"])
    config = trainer.config_from_args(args)
    assert config.augment == {**trainer.FAST_AUGMENT, "blur": 0.0, "rotation": 12.5}
    with pytest.raises(SystemExit):
        trainer.build_parser().parse_args(["--augment", "sharpness=1"])
    assert "--augment" in capsys.readouterr().err


def test_from_scratch_and_input_size_options_change_only_what_they_name():
    plain = trainer.config_from_args(trainer.build_parser().parse_args(["--preset", "wild"]))
    assert plain.init == trainer.COURSE_MODEL and plain.input_size == 128
    changed = trainer.config_from_args(trainer.build_parser().parse_args(["--preset", "wild", "--from-scratch", "--input-size", "112"]))
    assert changed.init is None and changed.input_size == 112
    assert dataclasses.replace(changed, init=plain.init, model_kwargs=plain.model_kwargs) == plain


@pytest.mark.parametrize("argv, must_contain", [
    (["--preset", "wild", "--input-size", "100"], "multiple of 16"),
    (["--preset", "wild", "--input-size", "0"], "--input-size"),
    (["--preset", "wild", "--from-scratch", "--init", "saved_models/keypoints_course.pt"], "--init"),
])
def test_training_options_that_cannot_go_together_stop_in_one_line(argv, must_contain, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        trainer.main([*argv, "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "m.pt")])
    assert info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in message and must_contain in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.pt").exists()


def test_a_failed_onnx_export_keeps_the_trained_model(tiny_dataset, tmp_path, isolated_cache, monkeypatch, capsys):
    from models import load_model

    def failing_export(*args, **kwargs):
        raise RuntimeError("exporter broke\nsecond line")

    monkeypatch.setattr(trainer, "save_model_with_onnx", failing_export)
    out = tmp_path / "m.pt"
    argv = ["--data", str(tiny_dataset), "--out", str(out), "--run-dir", str(tmp_path / "run"), "--epochs", "1",
            "--batch-size", "4", "--limit", "8", "--no-progress", "--onnx"]
    assert trainer.main(argv) == 1
    assert_one_line(capsys.readouterr().err.splitlines()[-1], str(out), "--export-onnx")  # after the progress bars
    assert load_model(out)[1]["preset"] == "cpu"


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("preset, workers", [("wild", 0), ("wild-pip", 0), ("wild", 2)])
def test_an_interrupted_wild_run_resumes_to_the_same_weights(preset, workers, tiny_dataset, tiny_300w, isolated_cache, tmp_path, monkeypatch):
    # the optimizer, the schedule, the learned flip offsets and every random draw (in the loop or in its workers)
    # continue where they stopped
    monkeypatch.setattr(no_faces, "BOXES_PER_SKIMAGE_PICTURE", 1)
    size = 32
    config = dataclasses.replace(trainer.PRESETS[preset], epochs=3, batch_size=8, limit=8, init=None, flip_offsets=True,
                                 model_kwargs={**trainer.PRESETS[preset].model_kwargs, "input_size": size})
    quiet = lambda _: None  # noqa: E731
    straight, history = trainer.train(config, str(tiny_dataset), tmp_path / "straight", progress=False, log=quiet, data_300w=str(tiny_300w),
                                       workers=workers)
    with interrupted_at_call(monkeypatch, trainer, "train_one_epoch", 3, Interrupt), pytest.raises(Interrupt):  # in the third epoch
        trainer.train(config, str(tiny_dataset), tmp_path / "broken", progress=False, log=quiet, data_300w=str(tiny_300w), workers=workers)
    resumed, resumed_history = trainer.train(config, str(tiny_dataset), tmp_path / "broken", resume=True, progress=False, log=quiet,
                                              data_300w=str(tiny_300w), workers=workers)
    for key in ("epoch", "train_loss", "val_300w_nme_io"):
        assert resumed_history[key] == history[key], key
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert len(straight.flip_offsets) == 2 and resumed.flip_offsets == straight.flip_offsets


def test_a_pixel_in_pixel_model_trains_in_the_wild_layout(tiny_dataset, tiny_300w, isolated_cache, tmp_path):
    config = dataclasses.replace(trainer.PRESETS["wild-pip"], epochs=1, limit=8, init=None, model_kwargs={**trainer.PIP_MODEL, "input_size": 48})
    model, history = trainer.train(config, str(tiny_dataset), tmp_path / "run", progress=False, data_300w=str(tiny_300w), log=lambda line: None)
    assert model.architecture == "fast_pip" and not model.training
    assert np.isfinite(history["train_loss"][0]) and np.isfinite(history["val_300w_nme_io"][0])
    with torch.no_grad():
        assert model(torch.rand(2, 1, 48, 48)).shape == (2, OutputLayout(68, ("300w", "course"), True).width)


def test_reference_landmarkers_read_the_held_out_300w_faces(tiny_300w, tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(trainer.REPO_DIR / "benchmarks"))
    import reference_landmarkers

    held_out = data_300w.Faces300WDataset(tiny_300w.parent, "validation")
    listing = tmp_path / "list.txt"
    listing.write_text("# held out\n" + "\n".join(held_out.names) + "\n")
    monkeypatch.setattr(reference_landmarkers, "VALIDATION_300W", listing)
    names, truth, pictures = reference_landmarkers.read_300w_validation(tiny_300w.parent)
    assert names == held_out.names and [p.name for p in pictures] == [f.picture.name for f in held_out.faces]
    np.testing.assert_allclose(truth, held_out.keypoints, atol=1e-3)  # both 0-based
