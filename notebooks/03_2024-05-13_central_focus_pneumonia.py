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
# # 03 · 2024-05-13 · CentralFocus blur on PNEUMONIA images only
#
# **Hypothesis.** The same blur, but on **PNEUMONIA** images only. The log wrote `central_focus(image, is_normal=(label == 1))`; label 1 is PNEUMONIA, so despite the flag's name the blur goes to PNEUMONIA images. Here the `ByClass` wrapper states the class outright.
#
# **What changed (from entry 02, `central_focus_normal`):** NORMAL transform: central_focus+log_baseline -> log_baseline; PNEUMONIA transform: log_baseline -> central_focus+log_baseline. The config is `pneumolib.studies.catalogue.get_config("central_focus_pneumonia")`, written as a `replace(...)` of the previous entry's.
#
# **What the log recorded:** Grad-CAM attention slightly better, NORMAL accuracy still low. Conclusion: central focus hurts this model; the augmentation-only baseline is the most stable.
#
# The notebook is written for the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient. Run with no data folder, it uses pneumolib's bundled synthetic fixture (one seed), and its numbers are then about phantoms, not patients: the first output line below says which data this render used, and the provenance line states the code version, profile, device and seeds. Each seed is a separate training run; the conclusions use all of them.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("03")

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
cfg = catalogue.get_config("central_focus_pneumonia")
nb.describe(cfg)

# %% [markdown]
# `CentralFocus` keeps a central ellipse sharp and blurs the rest. Here it is applied to **PNEUMONIA** training images only, through `ByClass`. On a fixed phantom:

# %%
# NBVAL_CHECK_OUTPUT
nb.central_focus_demo()

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
reference = series.load_compared("03", S)  # the entries its claims compare with (the one it changes, the baseline)
nb.log_vs_rerun("03", results, reference)

# %% [markdown]
# With the blur on PNEUMONIA training films the expected shortcut flips: blurred edges would mean PNEUMONIA and sharp edges NORMAL-or-unknown, and no test film is blurred, so a model that learnt it would lean towards NORMAL at test time. The log saw NORMAL accuracy stay low instead. The confusion matrix (first seed) and the seed table say which way each seed leans; when the seeds lean different ways, the verdict rows' mean is not a typical value, and the interval, which resamples the seeds, is wide: a 'cannot tell' then says how many seeds or films would decide it. When every Grad-CAM map is empty (the Grad-CAM output counts them), there is no lift to compare and the attention claim is left *not tested*. The comparisons with entries 01 and 02 load their runs above; the 'most stable' claim compares the spread of test accuracy over seeds with both CentralFocus entries', which takes five or more seeds per entry to judge (the row says how many this render has).
#
# *Scope:* the internal, patient-grouped test split of this data folder, under the profile and seeds of the provenance line. Internal splits overstate what a model does on a new cohort (notebook 10), so read these as comparisons between entries, not deployment estimates.

# %%
nb.wall_time(S)
