"""Reading TOML written by users (``synthor.toml``, rules files): one reader, bounded in size and depth, whose
every failure is a :class:`~synthor_core.errors.Problem` naming the file and line."""

from __future__ import annotations

import re
import tomllib

from .errors import Problem

MAX_TOML_CHARS = 4 * 1024 * 1024  # characters of one TOML file at most (a project's is a few kB)


def parse_toml(text: str, shown: str) -> tuple[dict | None, list[Problem]]:
    """Parse TOML text.

    Parameters
    ----------
    text : str, the file's content.
    shown : str, the file name for problems.

    Returns
    -------
    (dict, []) or (None, [Problem]): the problem names ``shown`` and the line when known: not valid TOML, larger
    than :data:`MAX_TOML_CHARS`, or nested so deeply that the parser gives up (arrays in arrays thousands deep).
    """
    if len(text) > MAX_TOML_CHARS:
        return None, [Problem(shown, f"is {len(text):,} characters long; at most {MAX_TOML_CHARS:,} are read")]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        return None, [Problem(shown, f"is not valid TOML: {exc}", row=line)]
    except RecursionError:
        return None, [
            Problem(
                shown,
                "is nested too deeply (arrays or tables inside each other hundreds of levels deep): not a project file",
            )
        ]
