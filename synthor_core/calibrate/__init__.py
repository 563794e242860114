"""Calibration kernels (DESIGN §3, §8): raking for flat tables, list balancing for households in zones, and
integerizing. Each kernel works on arrays; the classes that prepare them live with the synthesis run."""
