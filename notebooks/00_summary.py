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
# One row per claim: the log's words, the verdict of the rule in `pneumolib.studies.verdicts` (the same rule and the same runs as each notebook's "Log vs re-run" table, which the last column links to), and the number that decides it: the mean over seeds with its 95% interval (seeds, then patients within class, resampled; a comparison paired seed i against seed i on the same films). A verdict marked "collapsed seed" read a seed whose kept checkpoint called 95% or more of the validation films one class; "untrained seed" one whose kept model did not learn, by validation evidence (a validation AUC near chance), whichever epoch it kept; a seed that ranks the films well but calls one class is collapsed at its cut, not untrained. Entry 10's rows are the recipe's own hypothesis, not the log's.

# %%
runs = summary.all_runs(S)
rows = summary.claims_table(runs)
summary.show_claims(rows, len(S.seeds), summary.budget_text(runs))

# %% [markdown]
# ## Why did the model call everything PNEUMONIA?
#
# Each entry's calls taken apart into what can make a model over-call, every factor a number with a 95% interval (`pneumolib.notebook.account`):
#
# - **ranking**: each seed's test AUC; a model that ranks the films well calls whatever its cut makes it call. Mean over seeds, interval from resampling the seeds.
# - **cut**: the share of test films called PNEUMONIA at 0.5 and at the threshold the validation rule 'balanced' (`pneumolib.analysis.evaluate.balanced_threshold`, the recipe's rule) picks on each seed's own validation scores, their paired difference, and the true share. Mean over seeds, interval from the two-level bootstrap over seeds and patients (`pneumolib.core.stats.seed_effect`).
# - **class prior**: the share of PNEUMONIA among the training films the model was fitted to: an exact count, one half under the balanced sampler.
# - **kept epoch and collapses**: the epoch each seed kept, and the share of seeds whose kept checkpoint calls nearly every validation film one class (`pneumolib.studies.verdict_rule.collapsed`), with its Wilson interval.
# - **inference** (entry 04, once its notebook has run): the share of test predictions the log's greyscale path changes (the channel mismatch the log blamed) against the share ImageNet normalisation at inference only changes, and the share it then calls PNEUMONIA (notebook 04's inference paths). Mean over seeds, interval from resampling the seeds.
# - **shortcut**: for an entry that transforms one class only, how well the training films' sharpness (the variance of the Laplacian; for CentralFocus, the periphery's against the centre's) predicts the label as the entry's augmentation shows them, against the same films under the baseline's augmentation: an AUC with an interval resampling patients. No test film is transformed, so a model that learned the transform sees every test film as the other class.

# %%
from pneumolib.notebook import account, levers

data = nb.load_data(S)
factors = account.account_rows(S.runs, runs, data)
nb.show(account.account_frame(factors))

# %% [markdown]
# The answer, written from the table's numbers:

# %%
print(account.why_paragraph(factors))
summary.show_finding(rows, len(S.seeds), summary.budget_text(runs), factors)  # the box under the title, with the account

# %% [markdown]
# The same question seed by seed, as a figure: the share of test films each seed's model called PNEUMONIA; its caption, printed under it, says what to see.

# %%
summary.plot_everything_pneumonia(runs);

# %% [markdown]
# ## Which entries made it worse or better?
#
# Each entry against the entry it changed in the log's chain (`pneumolib.studies.catalogue.MODIFIES`: 03 against 02, 05 against 04, ...; the recipe against the log's baseline, trained at the recipe's budget when notebook 10 rendered that pair), paired seed i against seed i on the same test films: NORMAL recall, PNEUMONIA recall and balanced accuracy (the mean of the two recalls), this entry minus the other, the mean over seeds with its 95% interval (seeds, then patients within class, resampled: `pneumolib.core.stats.seed_effect`). "better" when the interval lies above 0, "worse" when below, otherwise "cannot tell" with how many seeds or films would decide it. An entry that evaluates the very networks of the entry it changed (08 reports on 07's; 05 is 04's run when no ImageNet weights exist) says "no change: the same trained networks" where no seed moved. An entry that asked for ImageNet weights and trained from random init says so beside its name. These are internal, patient-grouped test splits: they compare entries, and say nothing about a new cohort.

# %%
changes = summary.better_or_worse(runs)
nb.show(changes)

# %% [markdown]
# The answer, read from the table:

# %%
print(summary.what_changed(changes))

# %% [markdown]
# ## What to do instead?
#
# The levers notebook 10's ablation measures, and the log's own entries where a pair of them isolates one (the same transforms for both classes). Each is a paired difference over seeds on the test films both arms scored: the runs with the lever minus the runs without it, in NORMAL recall and in the share called PNEUMONIA, with the two-level bootstrap's 95% interval and the probability of improvement (see the glossary). The balanced sampler appears twice: with the Youden threshold its ablation step carries, and alone, both arms' scores cut at 0.5. A lever whose runs this render did not train says so.

# %%
lever_rows = levers.levers(S.runs, S.seeds, S.profile)
nb.show(levers.levers_frame(lever_rows))

# %% [markdown]
# The same, in words written from the table:

# %%
print(levers.levers_answer(lever_rows))

# %% [markdown]
# These levers are measured on the internal test split. Internal splits share the training data's acquisition shortcuts, so they cannot say which recipe keeps NORMAL recall on a new cohort. The only evidence is the external cohort's recorded measurements (624 films of other patients, kept outside this repository; a copy of the record in `docs/external_cohort`), shown below as recorded. Notebook 10 states the recipe those measurements led to and its internal figures; only a new measurement of the cohort says how the current recipe does there.

# %%
summary.what_instead()

# %% [markdown]
# The answer, computed from the record and from the claims table's verdict on the recipe's cohort claim:

# %%
print(summary.what_instead_answer(rows))

# %% [markdown]
# ## Glossary
#
# - **lift**: a region's share of a Grad-CAM map's energy divided by the region's share of the image (`pneumolib.analysis.cam`); 1 means the map has no preference for the region, above 1 that it dwells there.
# - **ROAD**: remove (impute) the pixels a map ranks most relevant, and separately those it ranks least relevant, and watch the model's probability for the map's class (`pneumolib.analysis.cam_checks.road`); the score is half the second change minus the first, and a map counts as faithful when its score beats a random map's, the paired difference's interval by patient lying above 0 by at least the printed resolution (`cam_checks.ROAD_RESOLUTION`); a model whose own scores barely move under the removals (a collapsed one) gives ROAD nothing to measure: its maps 'cannot be checked'.
# - **randomisation check**: re-initialise the network's last block and classifier (`pneumolib.analysis.cam_checks.randomise_top`) and rank-correlate each map with the new network's; maps whose mean correlation stays at or above `pneumolib.analysis.cam_checks.RANDOMISATION_MAX_CORR` do not depend on what the model learned.
# - **acc@ext**: accuracy re-weighted to the external cohort's class mix (`pneumolib.studies.stress.external_accuracy`: NORMAL recall times the cohort's NORMAL share plus PNEUMONIA recall times the rest), so that calling everything PNEUMONIA no longer scores well just because most internal test films are PNEUMONIA.
# - **paired difference**: one quantity of two arms, seed by seed on the same test films, subtracted; its 95% interval (`pneumolib.core.stats.seed_effect`) resamples seeds and, within class, patients, with the same draws for both arms.
# - **probability of improvement**: the share of seed pairs (one run of each arm) in which the first arm's value beats the second's, ties counted half (rliable's measure, `pneumolib.core.stats.SeedEffect`); 0.5 means no tendency either way.

# %%
nb.wall_time(S)
