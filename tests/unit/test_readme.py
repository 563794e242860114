"""The README's test command is the one CI runs, and the example's README names its source and licence."""

from __future__ import annotations

from synthor_testing import ROOT


def test_ci_runs_exactly_the_readme_test_command():
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    command = ci_lines[-1]
    assert command.startswith("pip install") and command.endswith("python -m pytest -q")
    assert f"```bash\n{command}\n```" in (ROOT / "README.md").read_text()


def test_readme_starts_the_app_on_the_bundled_example():
    readme = (ROOT / "README.md").read_text()
    assert "```bash\npip install -r requirements.txt -c constraints.txt && streamlit run app.py\n```" in readme
    assert (ROOT / "app.py").is_file()


def test_example_names_source_and_licence():
    text = (ROOT / "examples" / "adult" / "README.md").read_text()
    assert "https://doi.org/10.24432/C5XW20" in text and "CC BY 4.0" in text
