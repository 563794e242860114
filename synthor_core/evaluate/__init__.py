"""Evaluation: the report of a run, fit against held-out real records, plausibility rules, and the fit and realism
of households in zones."""
