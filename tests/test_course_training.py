"""Tests for what notebook 2 trains with: the face windows, the students' transforms feeding the training, the
checkpoints that resume after a disconnect, the budget estimate, and the stored answers of the checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

import data_load
import models
from course import checks
from course import expected as course_expected
from course.expected import notebook_solutions
from pipeline import evaluation, training

SOLUTIONS = notebook_solutions()


def windows_of(tiny_dataset, tmp_path, limit=None) -> dict:
    return data_load.load_face_windows("training", tiny_dataset, limit=limit, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------------------
# Face windows
# ---------------------------------------------------------------------------------------------------------
def test_windows_are_cut_once_and_read_from_the_cache(tiny_dataset, tmp_path, monkeypatch):
    windows = windows_of(tiny_dataset, tmp_path)
    assert windows["images"].shape == (12, data_load.WINDOW_SIZE, data_load.WINDOW_SIZE, 3) and windows["images"].dtype == np.uint8
    assert windows["keypoints"].shape == (12, 68, 2) and len(windows["names"]) == 12
    monkeypatch.setattr(data_load, "cut_face_windows", lambda *args, **kwargs: pytest.fail("cut again"))
    again = windows_of(tiny_dataset, tmp_path)
    assert np.array_equal(again["images"], windows["images"]) and list(again["names"]) == list(windows["names"])


def test_a_limit_spreads_the_windows_over_the_split(tiny_dataset, tmp_path):
    windows = windows_of(tiny_dataset, tmp_path, limit=4)
    assert len(windows["names"]) == 4 and len({data_load.person_of(n) for n in windows["names"]}) == 3
    assert list(data_load.spread_indices(10, 4)) == [0, 3, 6, 9] and list(data_load.spread_indices(3, None)) == [0, 1, 2]


def test_the_middle_of_a_rescaled_window_is_the_pipelines_crop(tiny_dataset, tmp_path):
    dataset = data_load.FacialKeypointsDataset(*data_load.split_paths(tiny_dataset, "training"))
    window = data_load.FaceWindows(windows_of(tiny_dataset, tmp_path))[5]
    for size in (64, 96, 112, 128):
        crop = data_load.Normalize()(data_load.FaceCrop(size)(dataset[5]))
        ours = data_load.test_transform(size)(window)
        moved = (ours["keypoints"].numpy() - crop["keypoints"]) * size / 2
        # warps put pixel centres at the square's edges, cv2.resize half a pixel inside: the two differ by a shift of
        # half a pixel times (1 - rescaled side / window side), 0.06 px at 112 px (window_matrix)
        shift = 0.5 * (1 - round(size * data_load.WINDOW_MARGIN) / data_load.WINDOW_SIZE)
        assert np.allclose(moved, -shift, atol=0.01), f"{size} px: the centre crop frames the face {np.abs(moved).max():.2f} px away"
        assert np.abs(ours["image"][0].numpy() - crop["image"]).mean() < 0.02


def test_windows_keep_the_keypoints_on_their_pixels(tiny_dataset, tmp_path):
    # A disk painted on point 30 of a picture, cut into its window, is where the window's keypoint 30 says.
    from course import notebook_helpers as nh

    dataset = data_load.FacialKeypointsDataset(*data_load.split_paths(tiny_dataset, "training"))
    sample = nh.paint_marker(dataset[2], 30)
    matrix = data_load.window_matrix(sample["keypoints"])
    window = {"image": data_load.warp(sample["image"], matrix, data_load.WINDOW_SIZE),
              "keypoints": data_load.transform_points(sample["keypoints"], matrix)}
    assert np.linalg.norm(nh.marker_centre(window["image"]) - window["keypoints"][30]) < 0.5


def test_a_person_is_never_on_both_sides_of_the_split():
    names = [f"Person_{p}_{i:02d}.jpg" for p in range(20) for i in range(3)]
    train, val = data_load.split_by_person(names, 0.25, 0)
    assert len(val) == 15 and not {data_load.person_of(names[i]) for i in train} & {data_load.person_of(names[i]) for i in val}


# ---------------------------------------------------------------------------------------------------------
# The students' transforms feed the training
# ---------------------------------------------------------------------------------------------------------
def short_training(windows: dict, epochs: int = 12) -> tuple[float, nn.Module, dict]:
    """A small network trained with the notebook's train_one_epoch for ``epochs`` epochs on the windows through
    data_load.train_transform(32): (its first epoch's loss, the network, a training batch)."""
    torch.manual_seed(0)
    np.random.seed(0)
    net = models.build_model("fast", input_size=32, widths=(8, 16), depths=(0,), head_channels=8, hidden=64)
    loader = DataLoader(data_load.FaceWindows(windows, transform=data_load.train_transform(32)), batch_size=6, shuffle=True,
                        collate_fn=data_load.collate_samples, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = [SOLUTIONS["train_one_epoch"](net, loader, training.WingLoss(32), optimizer, "cpu") for _ in range(epochs)]
    return losses[0], net, next(iter(loader))


def validation_error(net: nn.Module, windows: dict) -> float:
    """The NME_io of ``net`` on the windows through data_load.test_transform(32), with the notebook's validate."""
    val = DataLoader(data_load.FaceWindows(windows, transform=data_load.test_transform(32)), batch_size=12, collate_fn=data_load.collate_samples)
    return SOLUTIONS["validate"](net, val, training.WingLoss(32), "cpu")[1]


def test_a_broken_normalize_changes_what_the_network_learns_from(tiny_dataset, tmp_path, monkeypatch):
    windows = windows_of(tiny_dataset, tmp_path)
    right_loss, right_net, right_batch = short_training(windows)
    assert float(right_batch["keypoints"].abs().max()) <= 1.5

    original = data_load.Normalize.__call__

    def keypoints_left_in_pixels(self, sample):  # the usual mistake: the keypoints are not normalised
        return {**original(self, sample), "keypoints": np.asarray(sample["keypoints"], np.float32)}

    with monkeypatch.context() as patch:
        patch.setattr(data_load.Normalize, "__call__", keypoints_left_in_pixels)
        broken_loss, broken_net, broken_batch = short_training(windows)
        with pytest.raises(AssertionError, match="yours leaves the keypoints in pixels"):
            checks.check_normalize()
    assert float(broken_batch["keypoints"].abs().max()) > 5, "the batches the network learns from change"
    assert broken_loss > 10 * right_loss, (broken_loss, right_loss)
    # measured the same way (the right validation pipeline), the network trained on the broken batches is lost
    right_error, broken_error = validation_error(right_net, windows), validation_error(broken_net, windows)
    assert right_error < 0.5 < 5 * right_error < broken_error, (right_error, broken_error)


# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------
def small_setup(seed: int = 0, lr: float = 1e-3):
    torch.manual_seed(seed)
    model = models.build_model("fast", input_size=32, widths=(8, 16), depths=(0,), head_channels=4, hidden=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    return model, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)


def one_step(model, optimizer, schedule) -> None:
    model.train()
    optimizer.zero_grad()
    model(torch.rand(2, 1, 32, 32)).square().mean().backward()
    optimizer.step()
    schedule.step()


def test_a_checkpoint_restores_the_network_the_optimizer_and_the_schedule(tmp_path):
    model, optimizer, schedule = small_setup()
    one_step(model, optimizer, schedule)
    path = tmp_path / "run" / "last.pt"
    training.save_checkpoint(path, model, optimizer, schedule, epoch=1, history={"val_nme_io": [0.5]}, best=0.5)
    again, again_optimizer, again_schedule = small_setup(seed=1)
    state = training.load_checkpoint(path, again, again_optimizer, again_schedule)
    assert state == {"epoch": 1, "history": {"val_nme_io": [0.5]}, "best": 0.5}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert again_schedule.last_epoch == 1 and again_optimizer.state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert training.load_checkpoint(tmp_path / "none.pt", *small_setup()) is None


def test_a_checkpoint_of_another_setup_is_set_aside_not_resumed(tmp_path, capsys):
    path = tmp_path / "last.pt"
    training.save_checkpoint(path, *small_setup(), epoch=3, history={}, best=0.4)
    assert training.load_checkpoint(path, *small_setup(lr=5e-3)) is None  # another learning rate: another training
    printed = capsys.readouterr().out
    assert "was saved for another network, optimizer or schedule: starting afresh" in printed and printed.count("\n") == 1
    kept = list(tmp_path.glob("last.pt.*.old"))
    assert not path.exists() and len(kept) == 1, "nothing saved is lost"
    path.write_bytes(b"not a checkpoint")
    assert training.load_checkpoint(path, *small_setup()) is None
    assert "is not a checkpoint of this course" in capsys.readouterr().out


def test_the_setup_ignores_what_changes_as_training_goes_on():
    model, optimizer, schedule = small_setup()
    before = training.training_setup(model, optimizer, schedule)
    one_step(model, optimizer, schedule)
    assert training.training_setup(model, optimizer, schedule) == before  # learning rate moved, counters stepped


# ---------------------------------------------------------------------------------------------------------
# The budget
# ---------------------------------------------------------------------------------------------------------
def test_the_estimate_times_the_students_epoch_on_copies_and_scales_it(capsys):
    calls = []

    def train_one_epoch(model, loader, criterion, optimizer, device):
        calls.append(len(loader))
        return SOLUTIONS["train_one_epoch"](model, loader, criterion, optimizer, device)

    model, optimizer, _ = small_setup()
    before = [p.detach().clone() for p in model.parameters()]
    batches = [{"image": torch.rand(4, 1, 32, 32), "keypoints": torch.rand(4, 68, 2)} for _ in range(10)]
    cost = training.estimate_training_time(train_one_epoch, model, batches, nn.MSELoss(), optimizer, epochs=20,
                                           validate=SOLUTIONS["validate"], val_loader=batches[:3], batches=3)
    assert calls == [1, 3], "one batch to warm up, then the timed ones"
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "the network itself stays untrained"
    assert cost.train_batches == 10 and cost.val_batches == 3 and cost.epochs == 20
    assert cost.minutes == pytest.approx(20 * (10 * (cost.data + cost.network) + 3 * cost.validation) / 60)
    assert cost.gpu_minutes < cost.minutes
    report = cost.report(budget_minutes=1e-9)
    assert "20 epochs: about" in report and "on a GPU such as Colab's T4" in report and "over the budget" in report
    assert "within the budget" in cost.report(budget_minutes=1e9)


def test_the_estimate_keeps_the_faster_thread_count(monkeypatch):
    import time

    def slow_with_two_threads(model, loader, criterion, optimizer, device):
        time.sleep(0.02 * len(loader) * (5 if torch.get_num_threads() > 1 else 1))
        return 0.0

    model, optimizer, _ = small_setup()
    batches = [{"image": torch.rand(2, 1, 32, 32), "keypoints": torch.rand(2, 68, 2)} for _ in range(4)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cost = training.estimate_training_time(slow_with_two_threads, model, batches, nn.MSELoss(), optimizer, epochs=1, batches=3)
        assert torch.get_num_threads() == 1 and cost.threads == 1 and set(cost.thread_seconds) == {1, 2}
        assert "training uses 1" in cost.report()
    finally:
        torch.set_num_threads(before)


def test_a_new_optimizer_of_the_same_kind_takes_only_what_its_constructor_takes():
    model, _, _ = small_setup()
    for optimizer in (torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)):
        copy = training.same_optimizer(optimizer, model.parameters())
        assert type(copy) is type(optimizer) and copy.defaults["lr"] == optimizer.defaults["lr"]


# ---------------------------------------------------------------------------------------------------------
# The checks' stored answers
# ---------------------------------------------------------------------------------------------------------
def test_the_stored_answers_are_what_the_solutions_give_now():
    with np.load(checks.EXPECTED_FILE) as stored:
        problems = course_expected.differences({key: stored[key] for key in stored.files}, course_expected.compute())
    assert not problems, f"out of date: {problems[:5]}; run python -m course.expected"


def test_differences_name_what_changed():
    a = {"x": np.zeros(3), "y": np.ones(2)}
    assert course_expected.differences(a, {"x": np.zeros(3), "y": np.ones(2)}) == []
    assert set(course_expected.differences(a, {"x": np.zeros(3) + 1e-3, "z": np.ones(2)})) == {"x", "y", "z"}


def test_validation_of_the_notebook_measures_the_mean_nme_over_faces():
    # validate's NME is evaluation.nme_interocular averaged over faces, whatever the batches' sizes.
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 136))
    rng = np.random.default_rng(0)
    batches = [{"image": torch.rand(n, 1, 8, 8), "keypoints": torch.from_numpy(rng.uniform(-1, 1, (n, 68, 2)).astype(np.float32))} for n in (3, 1)]
    _, nme = SOLUTIONS["validate"](model, batches, nn.MSELoss(), "cpu")
    with torch.no_grad():
        predicted = np.concatenate([model(b["image"]).reshape(-1, 68, 2).numpy() for b in batches])
    truth = np.concatenate([b["keypoints"].numpy() for b in batches])
    assert nme == pytest.approx(float(evaluation.nme_interocular(predicted, truth).mean()), rel=1e-5)


def test_notebook_2_states_the_reference_design_as_measured():
    """The figures notebook 2's prose gives for the reference design are those ``course/reference_design.json``
    holds, and they were measured: a training time and a test NME_io within the course's target of 0.06."""
    import json

    from course import notebook_helpers as nh

    reference = nh.reference_design()
    assert reference["train_minutes"] > 0 and reference["epoch_seconds"] > 0 and reference["measured"]
    assert 0 < reference["test"]["nme_io"] <= 0.06 and reference["test_nme_io"] == reference["test"]["nme_io"]
    notebook = json.loads((nh.REPO_DIR / "2_Define_Train_Network.ipynb").read_text(encoding="utf-8"))
    prose = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    nme = reference["test"]["nme_io"]
    for stated in (f"{reference['epochs']} epochs took {reference['train_minutes']:.1f} min", f"gave NME_io {nme:.4f}",
                   f"{reference['epochs']} epochs, {reference['train_minutes']:.1f} min, test NME_io {nme:.4f}",
                   f"reaches NME_io about {nme:.3f}", f"about {reference['epoch_seconds']:.0f} s an epoch"):
        assert stated in prose, f"notebook 2 should say {stated!r}, as course/reference_design.json measured"


def test_the_comparison_claims_nothing_without_a_measured_reference():
    from course import notebook_helpers as nh

    text = nh.compare_with_references(0.05, 0.2, {"test": {"nme_io": 0.0}, "epochs": 30, "train_minutes": 0.0})
    assert "as good as the reference" not in text and "no measured figure" in text
    text = nh.compare_with_references(0.05, 0.2, {"test": {"nme_io": 0.054}, "epochs": 30, "train_minutes": 10.0})
    assert "as good as the reference design or better" in text
    text = nh.compare_with_references(0.08, 0.2, {"test": {"nme_io": 0.054}, "epochs": 30, "train_minutes": 10.0})
    assert "1.48 times the reference's error" in text
