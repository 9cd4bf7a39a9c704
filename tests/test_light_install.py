"""The light install (requirements-light.txt): the main job and the web demo run on ONNX Runtime alone, without
PyTorch, and find the same faces as with it. PyTorch is blocked in subprocesses (``None`` in ``sys.modules`` from a
``sitecustomize`` on PYTHONPATH, which the main job's worker processes load too)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models import read_checkpoint
from pipeline.inference import SHIPPED_MODEL
from resources.onnx_model import read_onnx_metadata

REPO_DIR = Path(__file__).resolve().parents[1]
BLOCK = 'import sys\nsys.modules["torch"] = None\nsys.modules["torchvision"] = None\n'

WEB_DEMO = """
import json, sys
import cv2
from pipeline import web_app
pipe = web_app.shared_pipeline()
demo = web_app.build_demo(pipe, sys.argv[2])
image = cv2.cvtColor(cv2.imread(sys.argv[1]), cv2.COLOR_BGR2RGB)
result = web_app.annotate_picture(pipe, web_app.Picture(image, "astronaut.jpg"), "sunglasses", sys.argv[2])
faces = pipe.detect(image)
print(json.dumps({"demo": type(demo).__name__, "status": result.status, "runner": type(pipe.runner).__name__,
                  "keypoints": [f.keypoints.tolist() for f in faces], "torch": sys.modules.get("torch") is not None}))
"""


def run(args: list[str], tmp_path: Path, block: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if block:
        folder = tmp_path / "no_torch"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(BLOCK)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO_DIR)])
    return subprocess.run([sys.executable, *args], cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("pictures") / "astronaut.jpg"
    assert cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_torch_is_really_blocked_in_the_subprocess(tmp_path):
    done = run(["-c", "import torch"], tmp_path, block=True)
    assert done.returncode != 0 and "import of torch halted" in done.stderr


def main_job(astronaut: Path, tmp_path: Path, block: bool) -> list[dict]:
    name = "light" if block else "full"
    second = tmp_path / f"{name}_copy.jpg"
    second.write_bytes(astronaut.read_bytes())
    results, out = tmp_path / f"{name}.jsonl", tmp_path / f"out_{name}"
    done = run(["detect.py", str(astronaut), str(second), "--json", str(results), "--out", str(out), "--workers", "2"], tmp_path, block)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.rglob("*.jpg")) == sorted([f"{astronaut.stem}_keypoints.jpg", f"{second.stem}_keypoints.jpg"])
    return sorted((json.loads(line) for line in results.read_text().splitlines()), key=lambda r: Path(r["image"]).name != astronaut.name)


def test_the_main_job_runs_without_torch_and_finds_the_same_faces(astronaut, tmp_path):
    light, full = main_job(astronaut, tmp_path, block=True), main_job(astronaut, tmp_path, block=False)
    assert [len(r["faces"]) for r in light] == [len(r["faces"]) for r in full] == [1, 1]
    for a, b in zip(light, full):
        for face_a, face_b in zip(a["faces"], b["faces"]):
            assert np.abs(np.array(face_a["keypoints"]) - np.array(face_b["keypoints"])).max() <= 0.01
            assert face_a["box"] == face_b["box"] and face_a["model"] == face_b["model"] == SHIPPED_MODEL.name


def test_importing_the_main_job_and_the_web_demo_never_imports_torch(tmp_path):
    code = "import sys, detect, app; from pipeline import batch, web_app, keypoint_pipeline; print('torch' in sys.modules and sys.modules['torch'] is not None)"
    done = run(["-c", code], tmp_path, block=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_web_demo_builds_and_annotates_without_torch_with_the_same_faces(astronaut, tmp_path):
    outputs = {}
    for block in (True, False):
        out = tmp_path / f"web_{block}"
        out.mkdir()
        done = run(["-c", WEB_DEMO, str(astronaut), str(out)], tmp_path, block)
        assert done.returncode == 0, done.stderr
        outputs[block] = json.loads(done.stdout.strip().splitlines()[-1])
    light, full = outputs[True], outputs[False]
    assert light["demo"] == "Blocks" and light["runner"] == "OnnxRunner" and not light["torch"]
    assert "1 face" in light["status"] and light["status"].split(" in ")[0] == full["status"].split(" in ")[0]
    assert len(light["keypoints"]) == len(full["keypoints"]) == 1
    assert np.abs(np.array(light["keypoints"]) - np.array(full["keypoints"])).max() <= 0.01


def test_without_torch_a_model_with_no_onnx_export_gets_one_clear_line(tmp_path):
    done = run(["detect.py", "--model", "saved_models/keypoints_course.pt", "--no-pictures", "--json", str(tmp_path / "r.jsonl")], tmp_path, block=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "keypoints_course.onnx does not exist" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_shipped_onnx_carries_the_metadata_of_its_pt():
    meta = read_checkpoint(SHIPPED_MODEL)["meta"]
    onnx_meta = read_onnx_metadata(SHIPPED_MODEL.with_suffix(".onnx"))
    assert onnx_meta == json.loads(json.dumps({k: v for k, v in meta.items() if k != "onnx_sha256"}))
    assert onnx_meta["input_size"] == 128 and onnx_meta["num_keypoints"] == 68


def test_exporting_a_model_writes_its_metadata_into_the_onnx(tmp_path):
    from models import build_model, load_model, save_model_with_onnx
    from resources.onnx_model import onnx_runner

    model = build_model("fast", 68, conventions=("300w", "course"), face_score=True)
    save_model_with_onnx(model, tmp_path / "student_net.pt", note="exported")
    _, meta = load_model(tmp_path / "student_net.pt")
    runner = onnx_runner(tmp_path / "student_net.pt")
    assert runner.meta == json.loads(json.dumps({k: v for k, v in meta.items() if k != "onnx_sha256"}))
    assert runner.meta["note"] == "exported"
    x = np.random.default_rng(0).random((2, 1, model.input_size, model.input_size), dtype=np.float32)
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(runner(x) - expected).max() < 1e-4
