"""Keep notebook runs under pytest (nbval) away from real data and from earlier run folders."""
import os
import tempfile

# The notebooks read these; the kernels nbval starts inherit this environment.
os.environ.pop("PNEUMOLIB_DATA_DIR", None)
# every notebook cell runs under nbval with the smallest training that still exercises it ('smoke': 2 epochs); that
# learning works is tested in tests/, not by the notebooks
os.environ["PNEUMOLIB_PROFILE"] = "smoke"
# notebook 10's ablation under the random split only (the early-ID holdout is trained by tests/test_cli.py and
# ranked by tests/test_protocol.py): seven fewer runs in CI
os.environ.setdefault("PNEUMOLIB_HOLDOUTS", "folders")
os.environ.setdefault("PNEUMOLIB_RUNS", tempfile.mkdtemp(prefix="pneumolib-nbval-runs-"))
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("PNEUMOLIB_CACHE_DIR", tempfile.mkdtemp(prefix="pneumolib-test-cache-"))
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
