"""Write the numbered notebooks from one template (run from the repo root: python tools/make_notebooks.py).

--conclusions-only rewrites just the closing "Log vs re-run" cell of existing notebooks, keeping their outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pneumolib import config as C  # noqa: E402

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT"

FILES = {
    "01": "01_2024-05-13_baseline.ipynb",
    "02": "02_2024-05-13_central_focus_normal.ipynb",
    "03": "03_2024-05-13_central_focus_pneumonia.ipynb",
    "04": "04_2024-05-14_rgb_grayscale_mismatch.ipynb",
    "05": "05_2024-05-14_pretrained.ipynb",
    "06": "06_2024-05-14_pretrained_central_focus_pneumonia.ipynb",
    "07": "07_2024-05-14_strong_normal_augmentation.ipynb",
    "08": "08_2024-05-15_classification_report_10_images.ipynb",
    "09": "09_2024-05-15_focal_loss_threshold_0.8.ipynb",
}

HYPOTHESES = {
    "01": "A ResNet18 trained from scratch on greyscale X-rays with light augmentation (flip, ±10° rotation, "
          "brightness/contrast 0.2) separates PNEUMONIA from NORMAL.",
    "02": "Blurring the periphery of NORMAL images (`CentralFocus`) pushes the model to look at the centre of "
          "the chest, where the lungs are.",
    "03": "The same blur, but on **PNEUMONIA** images only. The log wrote `central_focus(image, is_normal=(label == 1))`; "
          "label 1 is PNEUMONIA, so despite the flag's name the blur goes to PNEUMONIA images. Here the "
          "`ByClass` wrapper states the class outright.",
    "04": "The standard 3-channel ResNet18 is trained on RGB input; the log then forced greyscale at inference "
          "(`Image.open(p).convert(\"L\")` + `Grayscale(num_output_channels=3)`) and saw every prediction turn "
          "PNEUMONIA. Does that mismatch explain the collapse?",
    "05": "ImageNet-pretrained weights (`ResNet18_Weights.DEFAULT`) give clearer decisions and better NORMAL "
          "recognition than random init.",
    "06": "CentralFocus on PNEUMONIA images again, now on the pretrained model.",
    "07": "Strong augmentation for NORMAL images only (flip, ±20° rotation, Gaussian blur 3, brightness/contrast "
          "0.4) teaches the model what normal variation looks like, so it stops calling everything PNEUMONIA.",
    "08": "A classification report on 10 test images (5 NORMAL + 5 PNEUMONIA) tells whether the model is biased.",
    "09": "FocalLoss plus a stricter decision rule (PNEUMONIA only when p >= 0.8) softens the PNEUMONIA bias "
          "and raises NORMAL recall.",
}

CONCLUSIONS: dict[str, str] = {}  # filled in after the real-data run; see --conclusions-only


def header(cfg: C.ExperimentConfig) -> str:
    prev = C.previous(cfg)
    d = C.format_diff(C.diff(prev, cfg))
    pre = "" if prev is None else f" (from entry {prev.entry}, `{prev.name}`)"
    return (f"# {cfg.entry} · {cfg.date} · {cfg.title}\n\n"
            f"**Hypothesis.** {HYPOTHESES[cfg.entry]}\n\n"
            f"**What changed{pre}:** {d}. The config is `pneumolib.config.get_config(\"{cfg.name}\")`, written as a "
            f"`replace(...)` of the previous entry's.\n\n"
            f"**What the log recorded:** {cfg.log_said}\n\n"
            "The committed outputs come from the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, "
            "Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient; the profile line below states "
            "image size, epochs and device. Run with no data folder, the notebook uses pneumolib's bundled "
            "synthetic fixture instead, and its numbers are then about phantoms, not patients.")


PARAMS = """import os

DATA_DIR = os.environ.get("PNEUMOLIB_DATA_DIR")  # Kaggle-layout folder; None -> the bundled fixture
PROFILE = os.environ.get("PNEUMOLIB_PROFILE")  # fixture | cpu | gpu; None -> chosen from the data and the device
SEED = int(os.environ.get("PNEUMOLIB_SEED", "0"))
DEVICE = os.environ.get("PNEUMOLIB_DEVICE", "auto")  # auto | cpu | cuda
RUNS = os.environ.get("PNEUMOLIB_RUNS", "../runs")  # run folders (checkpoint, metrics, scores)"""

IMPORTS = """%matplotlib inline
from dataclasses import replace

from pneumolib import config as C, notebook as nb, plots
from pneumolib.experiment import run_experiment

DATA, PROFILE = nb.setup(DATA_DIR, PROFILE, DEVICE)"""


def cells_for(cfg: C.ExperimentConfig) -> list:
    e = cfg.entry
    pretrained = cfg.pretrained
    cells = [
        new_markdown_cell(header(cfg)),
        new_code_cell(PARAMS, metadata={"tags": ["parameters"]}),
        new_code_cell(IMPORTS),
        new_markdown_cell("## The experiment\n\nThe frozen config and how it differs from the previous entry "
                          "(this cell's output is pinned by the regression tests)."),
        new_code_cell(f'{CHECK}\ncfg = replace(C.get_config("{cfg.name}"), seed=SEED)\nnb.describe(cfg)'),
    ]
    if e in ("02", "03", "06"):
        target = "NORMAL" if e == "02" else "PNEUMONIA"
        cells += [
            new_markdown_cell(f"`CentralFocus` keeps a central ellipse sharp and blurs the rest. Here it is applied "
                              f"to **{target}** training images only, through `ByClass`. On a fixed phantom:"),
            new_code_cell(f"{CHECK}\nnb.central_focus_demo()"),
        ]
    if pretrained:
        cells += [
            new_markdown_cell("## Are ImageNet weights available?\n\npneumolib never falls back to random init "
                              "silently: if the weights are missing, this run is labelled random init everywhere "
                              "(its saved config says `pretrained=False`)."),
            new_code_cell("HAVE_WEIGHTS = nb.weights_status(cfg.model)"),
        ]
    cells += [
        new_markdown_cell("## Data and training transforms\n\nEach row: an image as decoded, then random draws of "
                          "its class's training transform."),
        new_code_cell("data = nb.load_data(DATA, cfg.seed)\n"
                      "plots.show_transforms(C.apply_profile(cfg, PROFILE), data[\"train\"]);"),
        new_markdown_cell("## Training\n\nBest epoch = lowest validation loss; the decision threshold comes from "
                          "the config's rule and travels in the checkpoint."),
        new_code_cell("r = run_experiment(cfg, DATA, nb.runs_dir(RUNS, cfg), profile=PROFILE, device=DEVICE, data=data"
                      + (", on_missing_weights=\"random_init\"" if pretrained else "") + ")\nnb.history(r)"),
        new_markdown_cell("## Test split: report, confusion matrix, probabilities\n\nIntervals are 95% bootstrap "
                          "intervals over test images."),
        new_code_cell("nb.report(r)"),
        new_markdown_cell("## Grad-CAM\n\nHeatmaps for the predicted class over test images; the white outline is the "
                          "lung field mask (exact on the fixture, a classical segmentation on real films). "
                          "*Lung focus* is the share of the heatmap's energy inside the lungs."),
        new_code_cell("nb.gradcam(r)"),
    ]
    if e == "04":
        cells += [
            new_markdown_cell("## The log's inference path against the checkpoint's\n\nThe same trained model, fed "
                              "the test images four ways. pneumolib's `Predictor` rebuilds the training "
                              "preprocessing from the checkpoint; the other rows are what a hand-written inference "
                              "script might do."),
            new_code_cell("from pneumolib import drift\n\nsize = r.predictor.preprocessing.image_size\n"
                          "rows = drift.compare_inference(r.predictor, data[\"test\"], {\n"
                          "    \"checkpoint preprocessing (pneumolib)\": None,\n"
                          "    \"log: convert('L') + Grayscale(3)\": drift.log_entry4_inference(size),\n"
                          "    \"ImageNet Normalize at inference only\": drift.imagenet_normalised_inference(size),\n"
                          "    \"1 grey channel into the 3-channel model\": drift.single_channel_inference(size),\n"
                          "})\nprint(drift.format_rows(rows))"),
            new_markdown_cell("Grad-CAM when the inputs are ImageNet-normalised at inference only (a mismatch "
                              "that does change the inputs):"),
            new_code_cell("from pneumolib.cam import explain\nfrom pneumolib.transforms import Preprocessing\n\n"
                          "wrong = Preprocessing(size, 3, \"imagenet\")\n"
                          "e = explain(r.predictor.model, r.explanation.samples, wrong, r.threshold)\n"
                          "plots.plot_cam_grid(e, title=\"Grad-CAM with ImageNet normalisation at inference only\")\n"
                          "print({k: round(v['lung_focus'], 2) for k, v in e.summary().items()})"),
        ]
    if e == "08":
        cells += [
            new_markdown_cell("## The log's 10-image report against the full test split"),
            new_code_cell("nb.subset_vs_full(r)"),
        ]
    if e == "09":
        cells += [
            new_markdown_cell("## FocalLoss on a fixed batch\n\nFocal loss down-weights confident, correct "
                              "examples; with gamma = 0 it is cross-entropy (pinned output):"),
            new_code_cell(f"{CHECK}\nimport torch\nfrom pneumolib.train import FocalLoss\n\n"
                          "logits = torch.tensor([[2.0, -1.0], [0.0, 0.0], [-1.0, 3.0], [0.5, 0.2]])\n"
                          "target = torch.tensor([0, 1, 1, 1])\n"
                          "print(\"cross-entropy      \", round(float(torch.nn.functional.cross_entropy(logits, target)), 4))\n"
                          "for gamma in (0.0, 1.0, 2.0):\n"
                          "    print(f\"focal gamma={gamma:<4}   \", round(float(FocalLoss(gamma)(logits, target)), 4))"),
            new_markdown_cell("## The decision rule\n\nThe same model under other thresholds (data-driven ones "
                              "chosen on the validation split):"),
            new_code_cell("nb.threshold_table(r)"),
            new_markdown_cell("## Grad-CAM on NORMAL test images\n\nThe log saw attention on the heart / lower "
                              "diaphragm. *Heart/diaphragm box* is the heatmap's share in the lower-central box "
                              "(0.18 for a uniform heatmap)."),
            new_code_cell("from pneumolib.cam import explain\n\nnormals = [s for s in data[\"test\"] if s.label == 0][:8]\n"
                          "e = explain(r.predictor.model, normals, r.predictor.preprocessing, r.threshold)\n"
                          "plots.plot_cam_grid(e, n_per_class=8, title=\"Grad-CAM on NORMAL test images\")\n"
                          "print(e.summary())"),
        ]
    cells.append(new_markdown_cell(conclusion(cfg)))
    return cells


def conclusion(cfg: C.ExperimentConfig) -> str:
    body = CONCLUSIONS.get(cfg.entry, "_To be written from the real-data outputs above._")
    return f"## Log vs re-run\n\n**The log:** {cfg.log_said}\n\n{body}"


def write_all() -> None:
    NB_DIR.mkdir(exist_ok=True)
    for entry, fname in FILES.items():
        cfg = C.get_config(entry)
        nb = new_notebook(cells=cells_for(cfg))
        nb.metadata.update({"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                            "language_info": {"name": "python"}})
        nbformat.write(nb, NB_DIR / fname)
        print("wrote", NB_DIR / fname)


def update_conclusions() -> None:
    for entry, fname in FILES.items():
        path = NB_DIR / fname
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[-1].cell_type == "markdown" and nb.cells[-1].source.startswith("## Log vs re-run")
        nb.cells[-1].source = conclusion(C.get_config(entry))
        nbformat.write(nb, path)
        print("updated", path)


if __name__ == "__main__":
    if "--conclusions-only" in sys.argv:
        from conclusions import CONCLUSIONS as _C  # noqa: E402  tools/conclusions.py

        CONCLUSIONS.update(_C)
        update_conclusions()
    else:
        write_all()
