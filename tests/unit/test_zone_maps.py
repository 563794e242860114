"""Maps of the fit per zone (issue 23 item 10): zone polygons read from a GeoJSON, drawn on plain axes (no tiles,
nothing fetched), coloured by each zone's % difference."""

from __future__ import annotations

import pandas as pd
import pytest

from synthor_core.errors import TargetValidationError
from synthor_core.geography import read_zone_shapes
from synthor_core.plots import zone_map
from synthor_core.readers.households import load_household_project
from synthor_testing import ROOT, project_with_shapes, squares_geojson

TRAVIS = ROOT.parent / "shared" / "data" / "commuting" / "48453_travis_tx"


def test_a_project_carries_its_zone_shapes_and_the_map_colours_each_zone_by_its_difference(tmp_path):
    project = load_household_project(project_with_shapes(tmp_path, squares_geojson([1, 2, 3, 4])))
    assert project.shapes.level == "TAZ" and sorted(project.shapes.rings) == [1, 2, 3, 4]
    figure = zone_map(project.shapes, pd.Series({1: -25.0, 2: 0.5, 3: 12.0}), "size_1")
    fills = {t.name: t.fillcolor for t in figure.data if t.fill == "toself"}
    assert fills == {"no value": "#cccccc", "below -20 %": "#2166ac", "-1 to 1 %": "#f7f7f7", "10 to 20 %": "#d6604d"}
    hover = next(t for t in figure.data if t.mode == "markers")
    assert sorted(hover.text) == ["1: -25.0 %", "2: +0.5 %", "3: +12.0 %", "4: no value"]
    assert figure.layout.xaxis.visible is False and figure.layout.yaxis.scaleanchor == "x"


def test_shapes_that_name_no_zone_or_are_not_geojson_are_problems(tmp_path):
    with pytest.raises(TargetValidationError) as info:
        load_household_project(project_with_shapes(tmp_path / "a", squares_geojson([1, 99])))
    assert [str(p) for p in info.value.problems] == ["data/zones.geojson: feature 2: '99' is no TAZ zone"]
    with pytest.raises(TargetValidationError) as info:
        load_household_project(project_with_shapes(tmp_path / "b", b"<kml/>"))
    assert [str(p) for p in info.value.problems] == [
        "data/zones.geojson: could not be read as GeoJSON (JSONDecodeError)"
    ]
    with pytest.raises(TargetValidationError) as info:
        load_household_project(
            project_with_shapes(tmp_path / "c", squares_geojson([1], "zone"), '\nshapes_level = "TRACT"')
        )
    assert "expected one of the geography levels REGION, PUMA, TAZ, got 'TRACT'" in str(info.value.problems[0])


@pytest.mark.skipif(not TRAVIS.is_dir(), reason="shared/data/commuting not present")
def test_real_tract_polygons_are_read_and_drawn_in_their_aspect():
    """Travis County's 218 census tracts (LODES / TIGER polygons, shared/data/commuting)."""
    tracts = pd.read_csv(TRAVIS / "tracts.csv", usecols=["tract_geoid"])["tract_geoid"]
    shapes, problems = read_zone_shapes(
        (TRAVIS / "tracts.geojson").read_bytes(), "TRACT", pd.Index(tracts), "tract_geoid", "tracts.geojson"
    )
    assert problems == [] and len(shapes.rings) == 218
    figure = zone_map(shapes, pd.Series(dtype=float), "no values yet")
    assert 1.14 < figure.layout.yaxis.scaleratio < 1.17  # 1 / cos(30.3 degrees): Austin's latitude
