"""Where the package's own files are, without importlib.resources.files().

files() answers for packages in zip files too, and brings the zip reader
(zipfile, ~5 ms at every start); this tool is installed as files, so a
package's directory is where its import spec says it is.
"""

from __future__ import annotations

from functools import cache
from importlib.util import find_spec
from pathlib import Path


@cache
def package_directory(name: str) -> Path:
    """The directory of package `name` (`analyzer.rules`), found without importing it."""
    spec = find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is a package"
    return Path(spec.submodule_search_locations[0])
