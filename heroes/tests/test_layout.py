"""The project package (heroes_site) serves the whole site; it knows the app (heroes)
only where it mounts it, in its URLconf."""

import ast
from pathlib import Path

import heroes_site


def imports_the_app(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(name == "heroes" or name.startswith("heroes.") for name in names):
            return True
    return False


def test_the_project_package_imports_the_app_only_in_its_urlconf():
    package = Path(heroes_site.__file__).parent
    importers = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if imports_the_app(path)
    ]
    assert importers == ["urls.py"]
