"""DuckDB aggregation against a plain pandas count."""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthor_core.aggregate import Aggregator
from synthor_core.readers.project import load_project


def test_aggregate_matches_pandas_and_puts_edges_in_the_right_bins(small_project_dir):
    project = load_project(small_project_dir)
    schema = project.schema
    records = pd.DataFrame(
        {
            "age": [0, 17, 18, 64, 65, 99, 40, 39],
            "sex": ["Female", "Male"] * 4,
            "employed": ["no", "yes", "yes", "no", "no", "yes", "yes", "no"],
        }
    )
    encoded, rejected = schema.encode(records)
    assert rejected == {}
    encoded["count"] = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int64)
    with Aggregator(schema, project.tables) as aggregator:
        counts = aggregator.aggregate(encoded)
        ids = aggregator.cell_ids(encoded)
    # age_by_sex bins [0, 18, 65, 99]: 0, 17 -> bin 0; 18, 64, 40, 39 -> bin 1; 65, 99 -> bin 2 (last closed)
    assert counts[0].tolist() == [[1, 2], [3 + 7, 4 + 8], [5, 6]]
    expected = pd.crosstab(records["sex"], records["employed"], values=encoded["count"], aggfunc="sum").fillna(0)
    assert counts[1].tolist() == expected.to_numpy().tolist()
    # age_by_employed bins [0, 18, 40, 65, 99]: 39 -> [18, 40), 40 -> [40, 65)
    assert ids[2].tolist() == [0, 1, 3, 4, 6, 7, 5, 2]


def test_encode_rejects_values_outside_the_schema_and_counts_them(small_project_dir):
    schema = load_project(small_project_dir).schema
    records = pd.DataFrame(
        {
            "age": [30, 64.5, 120, -1, 5],
            "sex": ["Female", "Male", "Male", "Female", "Alien"],
            "employed": ["no", "yes", "yes", "no", "no"],
        }
    )
    encoded, rejected = schema.encode(records)
    assert encoded["age"].tolist() == [30.0]
    assert rejected == {"age outside schema": 3, "sex outside schema": 1}


def test_aggregate_of_an_empty_population_is_zero(small_project_dir):
    project = load_project(small_project_dir)
    with Aggregator(project.schema, project.tables) as aggregator:
        counts = aggregator.aggregate(project.schema.empty_population())
    assert [c.sum() for c in counts] == [0, 0, 0]
