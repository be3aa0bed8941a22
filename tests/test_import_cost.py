"""`import pneumolib.api` is light, and loading a checkpoint pulls in no training, Grad-CAM or scikit-learn: the
API's heavy parts are imported where they are used, so a script that only predicts pays only for inference."""

import json
import subprocess
import sys

HEAVY = ("torch", "sklearn", "pytorch_grad_cam", "matplotlib", "pandas", "kornia", "monai")
NOT_FOR_LOAD = ("pneumolib.training", "pneumolib.analysis.cam", "pneumolib.studies.experiment", "sklearn",
                "pytorch_grad_cam")  # fmt: skip


def _modules(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_importing_the_api_loads_a_handful_of_modules_and_nothing_heavy():
    mods = _modules("import pneumolib.api")
    ours = [m for m in mods if m.startswith("pneumolib")]
    assert len(ours) <= 12, ours
    assert not [h for h in HEAVY if h in mods]


def test_loading_a_checkpoint_imports_no_training_gradcam_or_sklearn(trained_run):
    ckpt = trained_run.run_dir / "checkpoint.pt"
    mods = _modules(f"import pneumolib.api as api\napi.load({str(ckpt)!r})")
    assert "torch" in mods  # the model itself
    assert not [m for m in mods if m.startswith(NOT_FOR_LOAD)], [m for m in mods if m.startswith(NOT_FOR_LOAD)]
