"""Layer 0, the bottom: configs, files and JSON, the run-folder layout, devices and seeds, statistics, processes."""
