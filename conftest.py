"""Keep notebook runs under pytest (nbval) away from real data and from earlier run folders."""

import atexit
import os
import shutil
import tempfile

if os.environ.get("PYTEST_XDIST_WORKER"):
    # './dev.sh test' runs the suite on one worker process per core (pytest-xdist): one thread each, set before torch
    # is imported and inherited by every process a test starts (CLI runs, torchrun, notebook kernels). Measured on a
    # 2-core machine: two processes of one thread train at 27 img/s each (54 together, as one process of two threads
    # alone), two of two threads at 15 each (oversubscribed: each 3.5x slower).
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

# The notebooks read these; the kernels nbval starts inherit this environment.
os.environ.pop("PNEUMOLIB_DATA_DIR", None)
os.environ.pop("PNEUMOLIB_SENSITIVITY_RUNS", None)  # notebooks 01 and 10: no cpu-profile runs, the cell says so
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
if os.environ.get("PYTEST_XDIST_WORKER"):
    # each worker its own run folders (two notebooks on two workers would train one run folder at once; notebook 10
    # trains what its worker has not); the decode cache is shared, as it is made to be (atomic, verified entries)
    os.environ["PNEUMOLIB_RUNS"] = tempfile.mkdtemp(prefix=f"pneumolib-nbval-runs-{os.environ['PYTEST_XDIST_WORKER']}-")
    atexit.register(shutil.rmtree, os.environ["PNEUMOLIB_RUNS"], ignore_errors=True)
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
