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
# # 07 · 2024-05-14 · Strong augmentation for NORMAL images only (the log's pretrained model; random init where the weights are missing)
#
# **Hypothesis.** Strong augmentation for NORMAL images only (flip, ±20° rotation, Gaussian blur 3, brightness/contrast 0.4) teaches the model what normal variation looks like, so it stops calling everything PNEUMONIA.
#
# **What changed (from entry 06, `pretrained_central_focus_pneumonia`):** NORMAL transform: log_baseline -> log_strong_normal; PNEUMONIA transform: central_focus+log_baseline -> log_baseline. The config is `pneumolib.studies.catalogue.get_config("strong_normal_aug")`, written as a `replace(...)` of the previous entry's.
#
# **What the log recorded:** Predictions no longer extreme, softmax spread 0.4-0.7. Grad-CAM and confusion matrix analysis planned. "The most balanced model so far."
#
# **This re-run** starts from ImageNet weights only where the machine has them; otherwise it trains from random init (and where another entry trains exactly that config, that entry's checkpoints are re-evaluated instead of retrained), and the weights check, the seed table and the comparison tables say so. What the log says about pretraining can only be tested with the weights.
#
# The notebook is written for the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient. Run with no data folder, it uses pneumolib's bundled synthetic fixture (one seed), and its numbers are then about phantoms, not patients: the first output line below says which data this render used, and the provenance line states the code version, profile, device and seeds. Each seed is a separate training run; the conclusions use all of them.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("07")

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
cfg = catalogue.get_config("strong_normal_aug")
nb.describe(cfg)

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
reference = series.load_compared("07", S)  # the entries its claims compare with (the one it changes, the baseline)
nb.log_vs_rerun("07", results, reference)

# %% [markdown]
# The same model without the NORMAL-only augmentation (entry 05, whose runs are loaded above), seed by seed:

# %%
nb.paired_difference(results, reference["05"], "specificity", "NORMAL recall", "entry 05")

# %% [markdown]
# The spread claim is measured on every test probability, not on a few films. The 'most balanced' claim compares the gap between the two recalls with every earlier entry's, using their runs loaded above, read from the films: seed i of every entry on the same test films, the smallest earlier gap minus this one's, with the bootstrap over seeds and patients; an entry whose runs are missing leaves the claim *not tested* rather than judged on partial evidence. Against entry 05, the same random-init model without the NORMAL-only augmentation, the cell above counts the seeds on which NORMAL recall is lower, equal or higher here: where it is lower on every seed, the augmentation made this model call more films PNEUMONIA, not fewer. Like CentralFocus in 03 and 06, it is a class-dependent transform that no test film carries.
#
# *Scope:* the internal, patient-grouped test split of this data folder, under the profile and seeds of the provenance line. Internal splits overstate what a model does on a new cohort (notebook 10), so read these as comparisons between entries, not deployment estimates.

# %%
nb.wall_time(S)
