"""Layer 5: one experiment end to end, the stress test, the shortcut audit, drift, throughput, model cards, notebook 10's protocol, recipe candidates, the log's claims and their verdicts."""
