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
# # 01 · 2024-05-13 · Baseline ResNet18, augmentation only
#
# **Hypothesis.** A ResNet18 trained from scratch on greyscale X-rays with light augmentation (flip, ±10° rotation, brightness/contrast 0.2) separates PNEUMONIA from NORMAL.
#
# **What changed:** (the baseline). The config is `pneumolib.studies.catalogue.get_config("baseline")`, written as a `replace(...)` of the previous entry's.
#
# **What the log recorded:** Pneumonia classified well, normal images ambiguous. Grad-CAM: attention on the image periphery rather than the lung centre.
#
# The notebook is written for the real paediatric chest X-rays of Kermany, Zhang & Goldbaum (2018, Mendeley Data doi:10.17632/rscbjbr9sj.2, CC BY 4.0), split by patient. Run with no data folder, it uses pneumolib's bundled synthetic fixture (one seed), and its numbers are then about phantoms, not patients: the first output line below says which data this render used, and the provenance line states the code version, profile, device and seeds. Each seed is a separate training run; the conclusions use all of them.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("01")

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
cfg = catalogue.get_config("baseline")
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
# ### Does this budget train? (the series' budget rule)
#
# A verdict from models that did not train is noise: at 3 epochs of 1,000 films an earlier render's seeds collapsed to one class and decided most of the series' verdicts. The series is therefore rendered at the smallest budget at which every baseline seed trains, by a rule fixed before the render: no seed *collapses* (its kept checkpoint calls 95% or more of the validation films one class) and every seed reaches validation AUC 0.95. The check, on this render's seeds (validation split only):

# %%
nb.budget_check(results)

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
# Grad-CAM heatmaps over test images (the first output line names the layer, the method and the target; the method is HiResCAM (Draelos and Carin 2020), the Grad-CAM variant that multiplies each cell's activation by that cell's own gradient instead of the channel's mean gradient, so a cell is bright only where it raises the score); the white outline is the lung field mask (exact on the fixture; on real films the annotated mask where the data has one, else the shipped lung segmenter's). A region's *lift* is its share of the heatmap's energy divided by its share of the image: 1 = no preference, what a uniform heatmap scores. Every map is checked twice before its lifts are read: ROAD (Remove And Debias, Rong et al. 2022: removing the pixels the map ranks highest should hurt the prediction more than removing those a random map ranks highest) and the model-randomisation test (Adebayo et al. 2018: the map must change when the top layers are re-initialised). The gallery after the numbers shows the segmenter's masks on films without an annotated one, once for the series: the other notebooks only count them.

# %%
nb.gradcam(r, mask_gallery=True)

# %% [markdown]
# ## Log vs re-run
#
# Each row is one thing the log asserted, in its words; the quantity that tests it, measured on every seed; and the verdict of the rule in `pneumolib.studies.verdicts` (unit-tested in `tests/test_verdicts.py`), which also holds the thresholds each claim is read against.

# %%
nb.log_vs_rerun("01", results)

# %% [markdown]
# The baseline is the reference the later entries are compared with. Where the log found NORMAL films ambiguous, the NORMAL-recall row says whether that survives a patient-grouped split and the seeds run here (the provenance line counts them). The Grad-CAM row uses the lung lift (lung-focus share over the lung area; a heatmap spread evenly over the film scores 1) and is judged on the seeds whose maps pass their checks (ROAD above a random map, changed by model randomisation), when at least three do (the row names the seeds left out); it holds when the interval of the mean over seeds lies below 1. Even then it says the maps avoid the lungs, not that they sit on the periphery: the heart/diaphragm lift printed under the tiles says how much sits on the lower centre instead. Every seed has the same budget, so a 'seeds disagree' is a disagreement between seeds, not between budgets.
#
# *Scope:* the internal, patient-grouped test split of this data folder, under the profile and seeds of the provenance line. Internal splits overstate what a model does on a new cohort (notebook 10), so read these as comparisons between entries, not deployment estimates.

# %% [markdown]
# ### Sensitivity to the budget
#
# The series trains every seed at one budget, chosen by the budget rule. Where that budget is below the `cpu` profile's own (the cell says when it is not), the same claims are judged, by the same rule, on runs trained at the `cpu` profile's own budget: a separate run root (`PNEUMOLIB_SENSITIVITY_RUNS`, laid out like `RUNS`), trained ahead by `tools/train_series.py` and only read here; a run it lacks is named, and the sensitivity is not measured for it. Where both budgets decide a claim and disagree, the verdict at the larger budget stands (`pneumolib.studies.sensitivity` argues why); a side that cannot decide, or rests on a single seed (shown as its point value, without an interval), is *not decided* there, which is not a disagreement.

# %%
nb.sensitivity("01", S, results, root=os.environ.get("PNEUMOLIB_SENSITIVITY_RUNS"))

# %%
nb.wall_time(S)
