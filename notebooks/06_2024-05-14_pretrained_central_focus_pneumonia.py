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
# # 06 · 2024-05-14 · CentralFocus on PNEUMONIA only, on the log's pretrained model (re-run from random init where the weights are missing)
#
# **Hypothesis (the log's).** CentralFocus on PNEUMONIA images, tried again on the pretrained model, behaves as in entry 03: slightly better Grad-CAM, NORMAL accuracy still low, and lower accuracy than the same model without it. Without ImageNet weights this re-run tests it on entry 05's random-init model.
#
# **What changed (from entry 05, `pretrained`):** PNEUMONIA transform: log_baseline -> central_focus+log_baseline. The config is `pneumolib.studies.catalogue.get_config("pretrained_central_focus_pneumonia")`, written as a `replace(...)` of the previous entry's.
#
# **What the log recorded:** Same as entry 3: slight Grad-CAM improvement, NORMAL accuracy still low; central focus hurts; augmentation-only baseline most stable.
#
# **This re-run** starts from ImageNet weights only where the machine has them; otherwise it trains from random init (and where another entry trains exactly that config, that entry's checkpoints are re-evaluated instead of retrained), and the weights check, the seed table and the comparison tables say so. What the log says about pretraining can only be tested with the weights.
#
# The notebook is written for the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient. Run with no data folder, it uses pneumolib's bundled synthetic fixture (one seed), and its numbers are then about phantoms, not patients: the first output line below says which data this render used, and the provenance line states the code version, profile, device and seeds. Each seed is a separate training run; the conclusions use all of them.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("06")

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
cfg = catalogue.get_config("pretrained_central_focus_pneumonia")
nb.describe(cfg)

# %% [markdown]
# `CentralFocus` keeps a central ellipse sharp and blurs the rest. Here it is applied to **PNEUMONIA** training images only, through `ByClass`. On a fixed phantom:

# %%
# NBVAL_CHECK_OUTPUT
nb.central_focus_demo()

# %% [markdown]
# ## Are ImageNet weights available?
#
# pneumolib never falls back to random init silently: if the weights are missing, the runs below train from random init, say so in capitals, and save `pretrained=False` in their configs.

# %%
HAVE_WEIGHTS = nb.weights_status(cfg.model)

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
# ## Log vs re-run
#
# Each row is one thing the log asserted, in its words; the quantity that tests it, measured on every seed; and the verdict of the rule in `pneumolib.studies.verdicts` (unit-tested in `tests/test_verdicts.py`), which also holds the thresholds each claim is read against. Claims that compare with other entries load those notebooks' runs (same profile and seeds) first.

# %%
reference = series.load_compared("06", S)  # the entries its claims compare with (the one it changes, the baseline)
nb.log_vs_rerun("06", results, reference)

# %% [markdown]
# As in entry 03, CentralFocus on PNEUMONIA films is a class-dependent transform no test film carries; here it is compared with entry 05, the same model without it, whose runs are loaded above. Where the weights were missing, this is a random-init model, and the rows that compare with entry 05 are about CentralFocus, not pretraining; the Grad-CAM and accuracy comparisons with entry 05 each have one with entry 01 beside them, which also differs in input channels (1 against 3). Read the seed table before the 'NORMAL accuracy still low' row: a 'cannot tell' verdict says how many seeds or films would decide it, and a flag in brackets marks a seed that kept its first epoch or collapsed. Where the seed table shows a seed calling many PNEUMONIA films NORMAL (PNEUMONIA recall well below NORMAL recall), with a validation loss that stays high while the training loss falls (the training log), that seed behaves like a model that took the blur, which no test film has, as its PNEUMONIA cue; where PNEUMONIA recall stays high, it did not.
#
# *Scope:* the internal, patient-grouped test split of this data folder, under the profile and seeds of the provenance line. Internal splits overstate what a model does on a new cohort (notebook 10), so read these as comparisons between entries, not deployment estimates.

# %%
nb.wall_time(S)
