# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · 2024-05-14 · 3-channel training, greyscale forced at inference
#
# **Hypothesis.** The standard 3-channel ResNet18 is trained on the films as RGB (what `ImageFolder`'s loader gives); the log then forced greyscale at inference (`Image.open(p).convert("L")` + `Grayscale(num_output_channels=3)`) and saw every prediction turn PNEUMONIA. Does that mismatch explain the collapse?
#
# **What changed (from entry 03, `central_focus_pneumonia`):** in_channels: 1 -> 3; PNEUMONIA transform: central_focus+log_baseline -> log_baseline. The config is `pneumolib.studies.catalogue.get_config("rgb_grayscale_mismatch")`, written as a `replace(...)` of the previous entry's.
#
# **What the log recorded:** Grad-CAM attention abnormal, every prediction PNEUMONIA (probability 1.00). Cause: channel/preprocessing mismatch between training and inference.
#
# The notebook is written for the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient. Run with no data folder, it uses pneumolib's bundled synthetic fixture (one seed), and its numbers are then about phantoms, not patients: the first output line below says which data this render used, and the provenance line states the code version, profile, device and seeds. Each seed is a separate training run; the conclusions use all of them.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("04")

# %% tags=["parameters"]
import os

DATA_DIR = os.environ.get("PNEUMOLIB_DATA_DIR")  # real films: a Kaggle-layout folder, e.g. "../../shared/data/chest_xray"; None -> the bundled fixture (phantoms)
PROFILE = os.environ.get("PNEUMOLIB_PROFILE")  # smoke | fixture | cpu | gpu; None -> chosen from the data and the device
SEEDS = [int(s) for s in os.environ.get("PNEUMOLIB_SEEDS", os.environ.get("PNEUMOLIB_SEED", "0")).split(",")]
BUDGET = os.environ.get("PNEUMOLIB_BUDGET", "")  # one smaller budget for every seed (epochs, max_train_images), printed below; empty -> the profile's
DEVICE = os.environ.get("PNEUMOLIB_DEVICE", "auto")  # auto | cpu | cuda
RUNS = os.environ.get("PNEUMOLIB_RUNS", "../runs")  # run folders: RUNS/NN_name/seed{S}

# %%
# %matplotlib inline
from dataclasses import replace

from pneumolib.core import config as C
from pneumolib.studies import catalogue
from pneumolib.notebook import helpers as nb
from pneumolib.notebook import series
from pneumolib.analysis import plots

S = series.start(DATA_DIR, PROFILE, DEVICE, SEEDS, BUDGET, RUNS)  # every helper below gets S
nb.use_notebook_style()
DATA, PROFILE, SEEDS = S.data, S.profile, S.seeds

# %% [markdown]
# ## The experiment
#
# The frozen config and how it differs from the previous entry (this cell's output is pinned by the regression tests).

# %%
# NBVAL_CHECK_OUTPUT
cfg = catalogue.get_config("rgb_grayscale_mismatch")
nb.describe(cfg)

# %% [markdown]
# ## Data and training transforms
#
# For each image, two rows: random draws of its class's training transform through the per-sample reference, then through the batched augmentation that training actually uses (`augment.BatchAugment`, on the training device). The two should look alike in kind; each draws its own parameters.

# %%
data = nb.load_data(S)
nb.augmentation_views(C.apply_profile(cfg, PROFILE), data["train"])

# %% [markdown]
# ## Training, one run per seed
#
# Each seed is its own run (weight initialisation, sampling and augmentation draws) in `RUNS/NN_name/seed{S}`; a finished run with the same training config is reused. Best epoch = lowest validation loss; the decision threshold comes from the config's rule and travels in the checkpoint. The table: each seed's test metrics with 95% intervals (bootstrap over patients), its training budget, then the mean and range over the seeds. Every seed trains with the one budget the provenance line states, so the mean and range compare like with like. A seed whose kept model did not learn (a validation AUC near chance, whichever epoch it kept) is marked UNTRAINED in its 'kept epoch' column; one that ranks the films but calls nearly every validation film one class is COLLAPSED at its cut (its 'collapsed?' column), a different failure; the verdicts below flag both, and the 'last epoch' column gives every seed's last-epoch test accuracy and NORMAL recall beside the kept epoch's.

# %%
results = series.run_seeds(cfg, S)
nb.show(nb.seed_table(results))

# %% [markdown]
# ### Checkpoint stability
#
# The kept checkpoint is the epoch with the lowest validation loss. Next to it, the last epoch's validation metrics: where the two differ a lot, the choice of epoch decides the numbers as much as the recipe does.

# %%
nb.show(nb.checkpoint_table(results))

# %% [markdown]
# ### Training curves (first seed)
#
# Above the curves: the epochs at which the first seed's model called every validation film one class at threshold 0.5 (read from that epoch's share of films called PNEUMONIA). The checkpoint table above says which epoch each seed kept; the confusion matrix below shows what the first seed's kept checkpoint does on the test split.

# %%
r = results[0]
nb.history(r)

# %% [markdown]
# ## Test split: metrics, confusion matrix, probabilities (first seed)
#
# Intervals are 95% bootstrap intervals over patients (the films of one patient are not independent).

# %%
nb.report(r)

# %% [markdown]
# ## Grad-CAM (first seed)
#
# Grad-CAM heatmaps over test images (the first output line names the layer and the target); the white outline is the lung field mask (exact on the fixture; on real films the annotated mask where the data has one, else the shipped lung segmenter's). A region's *lift* is its share of the heatmap's energy divided by its share of the image: 1 = no preference, what a uniform heatmap scores.

# %%
nb.gradcam(r)

# %% [markdown]
# ## The log's inference path against the checkpoint's
#
# Every seed's model, fed the test images four ways. pneumolib's `Predictor` rebuilds the training preprocessing from the checkpoint; the other rows are what a hand-written inference script might do. *Share of predictions changed* counts the films whose predicted class differs from the checkpoint path's.

# %%
nb.inference_paths(results)

# %% [markdown]
# How the films themselves are stored, counted over every file of the data folder (format and PIL mode from each header; for colour files, whether any pixel's three channels differ):

# %%
nb.colour_census(data)

# %% [markdown]
# Grad-CAM (first seed) when the inputs are ImageNet-normalised at inference only, a mismatch that does change the inputs:

# %%
from pneumolib.analysis.cam import explain, sanity_checks
from pneumolib.data.transforms import Preprocessing

wrong = Preprocessing(r.predictor.preprocessing.image_size, 3, "imagenet")
e = explain(r.predictor.model, r.explanation.samples, wrong, r.threshold)
sanity_checks(r.predictor.model, e, wrong, per_class=4, seed=r.config.seed)  # ROAD and randomisation, as for every map
nb.cam_gallery(e, title="Grad-CAM with ImageNet normalisation at inference only")
nb.cam_table(e)

# %% [markdown]
# ## Log vs re-run
#
# Each row is one thing the log asserted, in its words; the quantity that tests it, measured on every seed; and the verdict of the rule in `pneumolib.studies.verdicts` (unit-tested in `tests/test_verdicts.py`), which also holds the thresholds each claim is read against. The row that compares with the baseline loads notebook 01's runs (same profile and seeds) first.

# %%
reference = series.load_compared("04", S)  # the entries its claims compare with (the one it changes, the baseline)
nb.log_vs_rerun("04", results, reference)

# %% [markdown]
# pneumolib loads every film as greyscale and copies it to the three channels for a 3-channel model, so the log's `convert("L")` + `Grayscale(3)` path feeds this model the same tensor it was trained on, and the inference table's count of changed predictions follows from that: it checks pneumolib's inference path against its training path, not whether the original files are grey. How the data folder's films are stored is counted just above: where they are colour files whose three channels are equal (as the census finds for the Kaggle films), `ImageFolder`'s RGB conversion gives three equal channels and the log's training and inference saw the same tensors too; where the census finds colour files whose channels differ, those two paths would differ, which this notebook's inference table does not test. A mismatch that changes pixel values (ImageNet normalisation at inference only) is shown for contrast, and feeding one channel to the 3-channel checkpoint is refused by pneumolib's `Predictor`.
#
# *Scope:* the internal, patient-grouped test split of this data folder, under the profile and seeds of the provenance line. Internal splits overstate what a model does on a new cohort (notebook 10), so read these as comparisons between entries, not deployment estimates.

# %%
nb.wall_time(S)
