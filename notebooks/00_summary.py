# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Summary: what the log claimed, and what the re-run found
#
# The log (2024-05-13 .. 05-15) trained a ResNet18 to tell PNEUMONIA from NORMAL chest X-rays, and its model kept calling everything PNEUMONIA. Notebooks 01-09 re-run its entries one by one and judge each of its claims; notebook 10 is this project's recipe. This notebook trains nothing: it reads the runs those notebooks left in `RUNS` (same profile and seeds), judges every claim with the same rule, and answers the log's own questions from the same runs. Render it after the others.

# %%
from pneumolib.notebook import helpers as nb

nb.headline("00")

# %% tags=["parameters"]
import os

DATA_DIR = os.environ.get("PNEUMOLIB_DATA_DIR")  # real films: a Kaggle-layout folder, e.g. "../../shared/data/chest_xray"; None -> the bundled fixture (phantoms)
PROFILE = os.environ.get("PNEUMOLIB_PROFILE")  # smoke | fixture | cpu | gpu; None -> chosen from the data and the device
SEEDS = [int(s) for s in os.environ.get("PNEUMOLIB_SEEDS", os.environ.get("PNEUMOLIB_SEED", "0")).split(",")]
BUDGET = os.environ.get("PNEUMOLIB_BUDGET", "")  # the budget the other notebooks were rendered with; empty -> the profile's
DEVICE = os.environ.get("PNEUMOLIB_DEVICE", "auto")  # auto | cpu | cuda
RUNS = os.environ.get("PNEUMOLIB_RUNS", "../runs")  # run folders: RUNS/NN_name/seed{S}

# %%
from pneumolib.notebook import series
from pneumolib.notebook import summary

S = series.start(DATA_DIR, PROFILE, DEVICE, SEEDS, BUDGET, RUNS)
nb.use_notebook_style()

# %% [markdown]
# ## Every claim of the log, judged
#
# One row per claim: the log's words, the verdict of the rule in `pneumolib.studies.verdicts` (the same rule and the same runs as each notebook's "Log vs re-run" table, which the last column links to), and the number that decides it, with the envelope of the seeds' 95% intervals. A verdict marked "collapsed seed" read a seed whose kept checkpoint called 95% or more of the validation films one class; "untrained seed" one whose kept model did not learn, by validation evidence (an AUC near chance, or one class), whichever epoch it kept. Entry 10's rows are the recipe's own hypothesis, not the log's.

# %%
runs = summary.all_runs(S)
rows = summary.claims_table(runs)
summary.show_claims(rows, len(S.seeds), summary.budget_text(runs))

# %% [markdown]
# ## Why did the model call everything PNEUMONIA?
#
# Per entry: the share of test films each seed's model called PNEUMONIA (mean over seeds, with the envelope of the seeds' Wilson intervals), the split's true share, NORMAL recall, and the seeds that collapsed. A model that learned nothing about NORMAL films calls about everything PNEUMONIA, the training folders' majority class; a model that learned calls about the true share. The budget rule in notebook 01 says whether this render's budget trains the baseline at all.

# %%
summary.everything_pneumonia(runs)

# %% [markdown]
# The same per seed: each seed's share called PNEUMONIA with its interval; a red cross marks a seed of the table's 'collapsed seeds' column; the dashed line is the true share.

# %%
summary.plot_everything_pneumonia(runs);

# %% [markdown]
# The answer, computed from the same runs:

# %%
print(summary.why_everything_pneumonia(runs))

# %% [markdown]
# ## Which entries made it worse or better?
#
# Each entry against the log's baseline (entry 01; the recipe against the log's baseline trained at the recipe's budget, which is notebook 01's when one budget serves every run, as its note says), paired by seed: NORMAL recall and accuracy minus the baseline's on the same seed, with the envelope of the paired 95% intervals; "better" when every seed's interval lies above 0, "worse" when every one lies below, otherwise the reason the evidence cannot decide. These are internal, patient-grouped test splits: they compare entries, and say nothing about a new cohort.

# %%
changes = summary.better_or_worse(runs)
changes

# %% [markdown]
# The answer, read from the table:

# %%
print(summary.what_changed(changes))

# %% [markdown]
# ## What to do instead?
#
# Internal splits share the training data's acquisition shortcuts, so they cannot say which recipe keeps NORMAL recall on a new cohort. The only evidence is the external cohort's recorded measurements (624 films of other patients, kept outside this repository; a copy of the record in `docs/external_cohort`), shown below as recorded. Notebook 10 states the recipe those measurements led to and its internal figures; only a new measurement of the cohort says how the current recipe does there.

# %%
summary.what_instead()

# %% [markdown]
# The answer, computed from the record and from the claims table's verdict on the recipe's cohort claim:

# %%
print(summary.what_instead_answer(rows))

# %%
nb.wall_time(S)
