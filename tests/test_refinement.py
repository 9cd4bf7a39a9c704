"""Tests for the second, local stage (pipeline/refinement.py): patch geometry, the network, its files and training."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from conftest import face_keypoints, interrupted_at_call
from models import ModelError, build_model, save_model_with_onnx
from pipeline import refinement
from pipeline.refinement import RefineConfig, RefinementNet, load_refinement, save_refinement
from pipeline.second_stage import (
    PATCH_SIZE,
    REGIONS,
    Refiner,
    companion_refiner,
    cut_patches,
    eye_frame,
    from_patches,
    patch_matrices,
    refinement_file,
    to_patches,
)


def turned_face(angle: float = 20.0, box=(60, 50, 100, 110)) -> np.ndarray:
    """A 68-point face turned by ``angle`` degrees about (100, 100): (68, 2) float32."""
    matrix = cv2.getRotationMatrix2D((100, 100), angle, 1.0)
    return (face_keypoints(box) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def randomized(model: RefinementNet, seed: int = 0) -> RefinementNet:
    """The model with random BatchNorm statistics and output weights large enough to move points."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
        torch.nn.init.normal_(model.out.weight, std=0.05)
        if model.given is not None:
            torch.nn.init.normal_(model.given.weight, std=0.5)
    return model.eval()


def test_every_keypoint_is_refined_by_some_region():
    covered = sorted({p for region in REGIONS for p in region.points})
    assert covered == list(range(68))


@pytest.mark.parametrize("angle", [0.0, 20.0, -35.0])
def test_points_go_into_their_patches_and_come_back(angle):
    shape = turned_face(angle)
    matrices = patch_matrices(shape)
    assert matrices.shape == (len(REGIONS), 2, 3)
    per_region = to_patches(shape, matrices)
    # each region's points lie inside its patch, and its mean at the middle
    for region, points in zip(REGIONS, per_region):
        assert np.abs(points).max() < 1, region.name
        np.testing.assert_allclose(points.mean(axis=0), -1 / PATCH_SIZE, atol=1e-5)  # pixel (S - 1) / 2 is -1/S normalised
    output = np.zeros((len(REGIONS), 2 * max(len(r.points) for r in REGIONS)))
    for r, points in enumerate(per_region):
        output[r, : points.size] = points.ravel()
    np.testing.assert_allclose(from_patches(output, matrices), shape, atol=1e-4)
    # the eye line is level in every patch, and the face's roll is the turn's
    eye_line = shape[42:48].mean(axis=0) - shape[36:42].mean(axis=0)
    for matrix in matrices:
        along, across = matrix[:, :2] @ eye_line
        assert along > 0 and abs(across) < 1e-6 * along
    assert eye_frame(shape)[0] == pytest.approx(eye_frame(turned_face(0.0))[0] - angle, abs=1e-4)  # float32 points
    assert eye_frame(shape)[1] == pytest.approx(np.linalg.norm(eye_line))


@pytest.mark.parametrize("scale", [1, 12])
def test_a_dot_at_a_keypoint_shows_where_the_patch_puts_it(scale):
    # a 1-pixel dot (or a dot as big as one pixel of the small picture, for the 12x photo reduced first)
    shape = turned_face(15.0)
    gray = np.zeros((300, 300), np.uint8)
    k = 39  # an eye corner
    x, y = np.round(shape[k]).astype(int)
    gray[y, x] = 255
    if scale > 1:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        shape = shape * scale + (scale - 1) / 2  # pixel centres of the enlarged picture
        x, y = x * scale + (scale - 1) / 2, y * scale + (scale - 1) / 2
    matrices = patch_matrices(shape)
    patches = cut_patches(gray, matrices)
    assert patches.shape == (len(REGIONS), PATCH_SIZE, PATCH_SIZE) and patches.dtype == np.float32
    eye = [r.name for r in REGIONS].index("eye_left")
    where = (np.array([[x, y]]) @ matrices[eye][:, :2].T + matrices[eye][:, 2])[0]
    v, u = np.unravel_index(np.argmax(patches[eye]), patches[eye].shape)
    assert np.hypot(u - where[0], v - where[1]) <= 1.0


def test_the_network_gives_every_region_its_points_for_each_convention():
    torch.manual_seed(0)  # the untrained weights and inputs: the same on every run, whatever ran before
    most = 2 * max(len(r.points) for r in REGIONS)
    for residual in (False, True):
        model = RefinementNet(residual=residual).eval()
        given = torch.rand(3, len(REGIONS), most) - 0.5
        out = model(torch.rand(3, len(REGIONS), PATCH_SIZE, PATCH_SIZE), given)
        assert out.shape == (3, len(REGIONS), 2, most)
        if residual:  # an untrained corrector leaves the points where they were given
            torch.testing.assert_close(out, given[:, :, None].expand_as(out), atol=0.05, rtol=0)
    # an untrained network leaves every point near the middle of its patch
    shape = turned_face()
    refined = Refiner(model).refine(np.full((240, 240), 128, np.uint8), shape[None], "300w")
    assert refined.shape == (1, 68, 2)


@pytest.mark.parametrize("residual", [False, True])
def test_pytorch_and_onnx_runtime_refine_within_a_tenth_of_a_pixel(tmp_path, residual):
    pytest.importorskip("onnxruntime")
    model = randomized(RefinementNet(residual=residual))
    path = tmp_path / "stage.refine.pt"
    save_refinement(model, path, rounds=2)
    rng = np.random.default_rng(0)
    gray = cv2.GaussianBlur(rng.integers(0, 255, (260, 240)).astype(np.uint8), (0, 0), 2)
    shapes = np.stack([turned_face(a) for a in (0.0, 12.0)])
    onnx, torch_refiner = Refiner.from_file(path), Refiner.from_file(path, backend="torch")
    assert onnx.session is not None and torch_refiner.session is None and onnx.rounds == 2
    for convention in ("300w", "course"):
        a, b = onnx.refine(gray, shapes, convention), torch_refiner.refine(gray, shapes, convention)
        assert np.abs(a - shapes).max() > 0.5  # the points did move
        assert np.abs(a - b).max() < 0.1
    # the export alone, from the metadata it carries (the light install, without PyTorch), gives the same points
    light = Refiner.from_onnx(path.with_suffix(".onnx"))
    assert light.rounds == 2 and light.conventions == onnx.conventions and light.meta["file"] == path.name
    np.testing.assert_array_equal(light.refine(gray, shapes, "300w"), onnx.refine(gray, shapes, "300w"))


def test_without_the_training_code_the_stage_runs_from_its_export(tmp_path, monkeypatch):
    """The students' copy of the course leaves pipeline/refinement.py out; the shipped stage still runs there."""
    from pipeline import second_stage

    path = tmp_path / "m.refine.pt"
    save_refinement(randomized(RefinementNet(residual=True)), path, rounds=1)
    gray = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (260, 240)).astype(np.uint8), (0, 0), 2)
    shape = turned_face(5.0)[None]
    expected = Refiner.from_file(path).refine(gray, shape, "300w")
    monkeypatch.setattr(second_stage, "has_training_code", lambda: False)
    alone = Refiner.from_file(path)
    assert alone.session is not None and alone.model is None
    np.testing.assert_array_equal(alone.refine(gray, shape, "300w"), expected)
    with pytest.raises(ModelError, match="onnx backend"):
        Refiner.from_file(path, backend="torch")


def test_an_export_without_metadata_is_told_in_one_line(tmp_path):
    path = tmp_path / "m.refine.pt"
    save_refinement(RefinementNet(), path)
    from pipeline.refinement import export_refinement_onnx

    export_refinement_onnx(RefinementNet(), path.with_suffix(".onnx"))  # a bare export: no metadata in it
    with pytest.raises(ModelError, match="carries no refinement metadata"):
        Refiner.from_onnx(path)
    path.with_suffix(".onnx").unlink()
    with pytest.raises(ModelError, match="does not exist"):
        Refiner.from_onnx(path)


def test_a_refinement_file_round_trips_and_bad_ones_are_told_in_one_line(tmp_path):
    model = randomized(RefinementNet(residual=True), seed=1)
    path = tmp_path / "m.refine.pt"
    save_refinement(model, path, onnx=False, rounds=1)
    loaded, meta = load_refinement(path)
    x, given = torch.rand(2, len(REGIONS), PATCH_SIZE, PATCH_SIZE), torch.rand(2, len(REGIONS), model.outputs)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, given), model(x, given))
    assert loaded.given is not None
    assert meta["rounds"] == 1 and [r["name"] for r in meta["regions"]] == [r.name for r in REGIONS]
    assert Refiner.from_file(path).session is None  # no export beside it: PyTorch
    with pytest.raises(ModelError, match="onnx"):
        Refiner.from_file(path, backend="onnx")
    for bad, content in (("missing.refine.pt", None), ("junk.refine.pt", b"not a model")):
        target = tmp_path / bad
        if content is not None:
            target.write_bytes(content)
        with pytest.raises(ModelError) as info:
            load_refinement(target)
        assert "\n" not in str(info.value)
    with pytest.raises(ModelError, match="convention"):
        Refiner(model).refine(np.zeros((50, 50), np.uint8), turned_face()[None], "dlib")


def test_a_model_finds_its_own_second_stage_beside_it(tmp_path):
    first = tmp_path / "keypoints.pt"
    assert refinement_file(first) == tmp_path / "keypoints.refine.pt"
    assert companion_refiner(first) is None  # none beside it: the first stage alone
    save_refinement(RefinementNet(), refinement_file(first), onnx=False)
    found = companion_refiner(first)
    assert isinstance(found, Refiner) and found.meta["file"] == "keypoints.refine.pt"
    assert companion_refiner(first, "none") is None and companion_refiner(first, None) is None
    with pytest.raises(ModelError):
        companion_refiner(first, tmp_path / "other.refine.pt")


def test_the_pipeline_runs_the_second_stage_after_its_re_crops(tmp_path):
    from pipeline.keypoint_pipeline import KeypointPipeline

    torch.manual_seed(0)
    model = build_model("fast", conventions=("300w", "course"), face_score=True, input_size=32, widths=(8, 16, 24, 32), head_channels=8, hidden=32)
    path = tmp_path / "keypoints.pt"
    save_model_with_onnx(model.eval(), path)
    picture = np.full((200, 200, 3), 120, np.uint8)
    box = [50, 40, 100, 100]
    plain = KeypointPipeline.from_pretrained(path, "haar")
    assert plain.second_stage is None
    save_refinement(randomized(RefinementNet()), refinement_file(path))
    staged = KeypointPipeline.from_pretrained(path, "haar")
    assert isinstance(staged.second_stage, Refiner)
    first = plain.keypoints_for_box(picture, box)
    expected = staged.second_stage.refine(cv2.cvtColor(picture, cv2.COLOR_RGB2GRAY), first[None], staged.convention)[0]
    np.testing.assert_allclose(staged.keypoints_for_box(picture, box), expected, atol=1e-4)
    assert KeypointPipeline.from_pretrained(path, "haar", second_stage=None).second_stage is None


def tiny_config(**overrides) -> RefineConfig:
    settings = dict(epochs=2, batch_size=4, jitters=2, val_fraction=0.34, limit=6, widths=(4, 8), head_channels=2, hidden=8)
    settings.update(overrides)
    return RefineConfig(**settings)


def test_training_lowers_the_loss_writes_each_epoch_and_resumes_exactly(tiny_dataset, tiny_300w, tmp_path, monkeypatch):
    torch.manual_seed(0)
    first = build_model("fast", conventions=("300w", "course"), face_score=True, input_size=32, widths=(8, 16, 24, 32), head_channels=8, hidden=32)
    runner = first.eval()
    config = tiny_config(epochs=3)
    log: list[str] = []
    straight, history = refinement.train_refinement(runner, config, str(tiny_dataset), str(tiny_300w), tmp_path / "straight", log=log.append)
    assert history["epoch"] == [1, 2, 3] and all(np.isfinite(history["train_loss"]))
    assert any(line.startswith("faces:") for line in log) and sum(line.startswith("epoch") for line in log) == 3
    state = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["config"] == dataclasses.asdict(config)

    # stop the run at the end of its second epoch, after that epoch's checkpoint
    with interrupted_at_call(monkeypatch, refinement, "measure", 3), pytest.raises(KeyboardInterrupt):
        refinement.train_refinement(runner, config, str(tiny_dataset), str(tiny_300w), tmp_path / "broken", log=log.append)
    assert torch.load(tmp_path / "broken" / "last.pt", weights_only=True)["epoch"] == 2
    resumed, resumed_history = refinement.train_refinement(
        runner, config, str(tiny_dataset), str(tiny_300w), tmp_path / "broken", resume=True, log=log.append
    )
    assert resumed_history["train_loss"] == history["train_loss"]
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    with pytest.raises(ModelError):
        refinement.train_refinement(runner, tiny_config(epochs=4), str(tiny_dataset), str(tiny_300w), tmp_path / "broken", resume=True, log=log.append)


def test_a_stage_of_some_regions_leaves_the_other_points_as_they_were():
    eyes = refinement.chosen_regions(("eye_left", "eye_right"))
    model = randomized(RefinementNet(eyes, residual=True))
    shape = turned_face(10.0)
    refined = Refiner(model).refine(np.full((240, 240), 100, np.uint8), shape[None], "course")[0]
    moved = np.abs(refined - shape).max(axis=1) > 1e-4
    assert moved[36:48].all() and not moved[:36].any() and not moved[48:].any()
    with pytest.raises(ValueError, match="eye_left"):
        refinement.chosen_regions(("eyes",))


def test_one_training_command_trains_both_stages(tiny_dataset, tiny_300w, tmp_path, isolated_cache, monkeypatch):
    from pipeline import no_faces, trainer

    monkeypatch.setattr(no_faces, "BOXES_PER_SKIMAGE_PICTURE", 1)
    @dataclasses.dataclass
    class TinyConfig(RefineConfig):  # a network small enough for a test
        batch_size: int = 4
        jitters: int = 2
        widths: tuple = (4, 8)
        head_channels: int = 2
        hidden: int = 8

    monkeypatch.setattr(refinement, "RefineConfig", TinyConfig)
    out = tmp_path / "m.pt"
    argv = ["--preset", "wild-cpu", "--data", str(tiny_dataset), "--data-300w", str(tiny_300w), "--out", str(out), "--run-dir",
            str(tmp_path / "run"), "--epochs", "1", "--limit", "8", "--input-size", "32", "--from-scratch", "--no-progress",
            "--second-stage-epochs", "1"]
    assert trainer.main(argv) == 0
    stage = Refiner.from_file(refinement_file(out))
    assert stage.meta["first_stage"] == "m.pt" and (tmp_path / "run" / "second_stage" / "last.pt").is_file()
    assert trainer.SECOND_STAGE_EPOCHS["wild"] > 0 and "wild-cpu" not in trainer.SECOND_STAGE_EPOCHS


def test_the_part_of_a_network_for_some_regions_answers_as_the_whole_does():
    whole = randomized(RefinementNet(residual=True), seed=3)
    names = ("nose", "eye_left", "eye_right")
    part = refinement.subset(whole, names)
    chosen = [[r.name for r in REGIONS].index(name) for name in names]
    patches, given = torch.rand(2, len(REGIONS), PATCH_SIZE, PATCH_SIZE), torch.rand(2, len(REGIONS), whole.outputs) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(part(patches[:, chosen], given[:, chosen]), whole(patches, given)[:, chosen])
    shape = turned_face(5.0)
    gray = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (240, 240)).astype(np.uint8), (0, 0), 2)
    full, partial = Refiner(whole).refine(gray, shape[None], "300w")[0], Refiner(part).refine(gray, shape[None], "300w")[0]
    np.testing.assert_allclose(partial[27:48], full[27:48], atol=1e-4)
    np.testing.assert_allclose(partial[:27], shape[:27])
    np.testing.assert_allclose(partial[48:], shape[48:])
    with pytest.raises(ValueError, match="mouths"):
        refinement.subset(whole, ("mouths",))


def test_only_the_regions_that_pay_on_the_held_out_people_are_kept(monkeypatch):
    whole = RefinementNet(residual=True)
    errors = {r.name: (0.05, 0.04 if r.name.startswith(("eye", "nose")) else 0.06) for r in REGIONS}
    monkeypatch.setattr(refinement, "region_errors", lambda refiner, faces: errors)
    log: list[str] = []
    kept, measured = refinement.regions_that_pay(whole, {"held-out": None}, log.append)
    assert [r.name for r in kept.regions] == ["nose", "eye_left", "eye_right"] and measured == {"held-out": errors}
    assert "mouth 0.0500 -> 0.0600 (not kept)" in log[0]
    monkeypatch.setattr(refinement, "region_errors", lambda refiner, faces: {r.name: (0.05, 0.06) for r in REGIONS})
    with pytest.raises(ModelError):
        refinement.regions_that_pay(whole, {"held-out": None}, log.append)
