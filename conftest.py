"""Keep notebook runs under pytest (nbval) away from real data and from earlier run folders."""

import atexit
import os
import shutil
import tempfile

# The notebooks read these; the kernels nbval starts inherit this environment.
os.environ.pop("PNEUMOLIB_DATA_DIR", None)
# every notebook cell runs under nbval with the smallest training that still exercises it ('smoke': 2 epochs); that
# learning works is tested in tests/, not by the notebooks
os.environ["PNEUMOLIB_PROFILE"] = "smoke"
# notebook 10's ablation under the random split only (the early-ID holdout is trained by tests/test_cli.py and
# ranked by tests/test_protocol.py): seven fewer runs in CI
os.environ.setdefault("PNEUMOLIB_HOLDOUTS", "folders")
os.environ.setdefault("TQDM_DISABLE", "1")
for var, prefix in (("PNEUMOLIB_RUNS", "pneumolib-nbval-runs-"), ("PNEUMOLIB_CACHE_DIR", "pneumolib-test-cache-")):
    if var not in os.environ:  # made here, so removed here when the session ends (about 1 GB of smoke checkpoints)
        os.environ[var] = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, os.environ[var], ignore_errors=True)
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
