"""`uvmtrace sweep`: a plan of variants x repeats, each run recorded with `uvmtrace record`."""
