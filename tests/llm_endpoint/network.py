"""The LLMSynthor controlled e-commerce network (shared/benchmarks/ecommerce_bn.md; Tang et al., arXiv
2505.14752, v2 appendix A.1): p = p(age) p(gender) p(location) p(category | age group, gender)
p(price | category) p(payment | location)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

AGE_WEIGHTS = np.array([0.5, 0.45, 0.15]) / 1.10  # as printed, renormalised to (0.4545, 0.4091, 0.1364)
AGE_MEANS, AGE_SDS = np.array([24.0, 38.0, 55.0]), np.array([6.0, 15.0, 10.0])
GENDERS, GENDER_P = ["Male", "Female"], [0.45, 0.55]
LOCATIONS, LOCATION_P = ["Developed", "Developing"], [0.4, 0.6]
CATEGORIES = ["Electronics", "Apparel", "Food & Beverages", "Furniture & Appliances"]
CATEGORY_P = {
    ("young", "Male"): [0.50, 0.25, 0.05, 0.20],
    ("young", "Female"): [0.20, 0.50, 0.05, 0.25],
    ("middle", "Male"): [0.20, 0.10, 0.50, 0.20],
    ("middle", "Female"): [0.10, 0.20, 0.55, 0.15],
    ("old", "Male"): [0.10, 0.10, 0.65, 0.15],
    ("old", "Female"): [0.10, 0.10, 0.60, 0.20],
}
PRICE = {
    "Electronics": (800.0, 1000.0),
    "Apparel": (100.0, 500.0),
    "Food & Beverages": (100.0, 400.0),
    "Furniture & Appliances": (200.0, 500.0),
}
PAYMENTS = ["Online Payment", "Cash on Delivery"]
PAYMENT_P = {"Developed": [0.7, 0.3], "Developing": [0.4, 0.6]}
GROUPS = [["age", "gender", "category"], ["category", "price"], ["location", "payment"]]


def _truncated_normal(mean: np.ndarray, sd: np.ndarray, low: float, high: float, rng) -> np.ndarray:
    out = rng.normal(mean, sd)
    bad = (out < low) | (out > high)
    while bad.any():
        out[bad] = rng.normal(mean[bad], sd[bad])
        bad = (out < low) | (out > high)
    return out


def age_group(age: np.ndarray) -> np.ndarray:
    """young < 35 <= middle < 55 <= old."""
    return np.where(age < 35, "young", np.where(age < 55, "middle", "old"))


def sample_network(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` records: age (int years, 18-90), gender, location, category, price (currency units, 2 decimals,
    0-2000), payment."""
    component = rng.choice(3, size=n, p=AGE_WEIGHTS)
    age = np.round(_truncated_normal(AGE_MEANS[component], AGE_SDS[component], 18, 90, rng)).astype(int)
    gender = rng.choice(GENDERS, size=n, p=GENDER_P)
    location = rng.choice(LOCATIONS, size=n, p=LOCATION_P)
    groups = age_group(age)
    category = np.empty(n, dtype=object)
    for (group, g), p in CATEGORY_P.items():
        mask = (groups == group) & (gender == g)
        category[mask] = rng.choice(CATEGORIES, size=int(mask.sum()), p=p)
    mean = np.array([PRICE[c][0] for c in category])
    sd = np.array([PRICE[c][1] for c in category])
    price = np.round(_truncated_normal(mean, sd, 0.0, 2000.0, rng), 2)
    payment = np.empty(n, dtype=object)
    for loc, p in PAYMENT_P.items():
        mask = location == loc
        payment[mask] = rng.choice(PAYMENTS, size=int(mask.sum()), p=p)
    return pd.DataFrame(
        {"age": age, "gender": gender, "location": location, "category": category, "price": price, "payment": payment}
    )


VARIABLES_TOML = """
[[variables]]
name = "age"
type = "numeric"
unit = "years"
min = 18
max = 90
integer = true
description = "Age of the customer"

[[variables]]
name = "gender"
type = "categorical"
categories = ["Male", "Female"]
description = "Gender of the customer"

[[variables]]
name = "location"
type = "categorical"
categories = ["Developed", "Developing"]
description = "Development tier of the customer's region"

[[variables]]
name = "category"
type = "categorical"
categories = ["Electronics", "Apparel", "Food & Beverages", "Furniture & Appliances"]
description = "Category of the purchased product"

[[variables]]
name = "price"
type = "numeric"
unit = "currency units"
min = 0
max = 2000
description = "Price paid"

[[variables]]
name = "payment"
type = "categorical"
categories = ["Online Payment", "Cash on Delivery"]
description = "Payment method"
"""


def quantile_edges(values: pd.Series, low: float, high: float, bins: int = 6, integer: bool = False) -> list[float]:
    """``bins`` quantile bins (the paper's binning) from ``low`` to ``high``, rounded, strictly increasing."""
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    inner = np.round(inner) if integer else np.round(inner, 0)
    edges = [low] + sorted({float(x) for x in inner if low < x < high}) + [high]
    return edges


def write_ecommerce_project(folder: Path, records: pd.DataFrame, tables, size: int) -> Path:
    """A project folder whose targets are ``tables`` computed on ``records``.

    ``tables``: tuples of variables (age and price binned in 6 quantile bins of ``records``), or
    ``(variables, edges)`` pairs giving each numeric variable's bin edges explicitly.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tables").mkdir(exist_ok=True)
    default = {
        "age": quantile_edges(records["age"], 18, 90, integer=True),
        "price": quantile_edges(records["price"], 0, 2000),
    }
    lines = [
        "[population]",
        f"size = {size}",
        'description = "Customers of an online shop and one purchase each"',
        VARIABLES_TOML,
    ]
    for entry in tables:
        variables, edges = (entry, default) if isinstance(entry[0], str) else entry
        name = "_".join(variables)
        frame = records[list(variables)].copy()
        used = [v for v in variables if v in edges]
        for var in used:
            e = edges[var]
            labels = [f"[{a:g}, {b:g}{']' if i == len(e) - 2 else ')'}" for i, (a, b) in enumerate(zip(e, e[1:]))]
            idx = np.clip(np.searchsorted(e, frame[var], side="right") - 1, 0, len(e) - 2)
            frame[var] = np.asarray(labels)[idx]
        frame.value_counts().rename("count").reset_index().to_csv(folder / "tables" / f"{name}.csv", index=False)
        lines += [
            "[[tables]]",
            f'name = "{name}"',
            f'file = "tables/{name}.csv"',
            'format = "long"',
            "variables = [" + ", ".join(f'"{v}"' for v in variables) + "]",
        ]
        if used:
            lines.append("[tables.bins]")
            lines += [f"{v} = [" + ", ".join(f"{x:g}" for x in edges[v]) + "]" for v in used]
        lines.append("")
    (folder / "synthor.toml").write_text("\n".join(lines), encoding="utf-8")
    return folder
