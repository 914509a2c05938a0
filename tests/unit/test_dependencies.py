"""The declared dependencies are the imported ones: every distribution pyproject.toml declares is
imported somewhere (a pytest plugin counts when pytest loads it), and every third-party module the
code imports comes from a declared distribution. The package (mailsync/, without mailsync/testing/)
may use the main dependencies only; the tests, mailsync/testing/ and the Python scripts may also use
the test extra's."""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Modules of this repository imported by their bare name: tests/ is on the tests' sys.path, and
# scripts/ on the scripts'.
LOCAL = {"mailsync"} | {p.stem for folder in ("tests", "scripts") for p in (REPO / folder).glob("*.py")}
# Extras that are servers the tests run, each installed by a script into a virtualenv of its own and
# spoken to over the network: never imported.
SERVER_EXTRAS = {"test-crm": "scripts/test-crm"}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _name(requirement: str) -> str:
    return _normal(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0])


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project.get("optional-dependencies", {}).items()}
    return {_name(r) for r in project["dependencies"]}, extras


def _python_files(*roots: str) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        path = REPO / root
        if path.is_file():
            files.append(path)
        else:
            files += [p for p in path.rglob("*.py") if ".venv" not in p.parts]
    return files


def _scripts() -> list[str]:
    return [f"scripts/{p.name}" for p in sorted((REPO / "scripts").iterdir())
            if p.is_file() and p.read_bytes().startswith(b"#!") and b"python" in p.read_bytes().split(b"\n", 1)[0]]


def _top_level_imports(files: list[Path]) -> dict[str, set[str]]:
    """{top-level module: {file, ...}} of every absolute import in these files."""
    found: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distributions(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """{distribution (normalized): {file, ...}} for the third-party modules among ``imports``."""
    by_module = _packages_distributions()
    out: dict[str, set[str]] = {}
    unknown = []
    for module, files in imports.items():
        if module in sys.stdlib_module_names or module in LOCAL or module == "__future__":
            continue
        dists = by_module.get(module)
        if not dists:
            unknown.append(f"{module} (in {', '.join(sorted(files))})")
            continue
        for dist in dists:
            out.setdefault(_normal(dist), set()).update(files)
    assert not unknown, f"imported, but no installed distribution provides it: {unknown}"
    return out


def _package_files() -> list[Path]:
    return [p for p in _python_files("mailsync") if "testing" not in p.relative_to(REPO / "mailsync").parts[:1]]


def _test_files() -> list[Path]:
    return _python_files("tests", "mailsync/testing", *_scripts())


def test_the_package_imports_only_main_dependencies():
    main, _extras = _declared()
    used = _distributions(_top_level_imports(_package_files()))
    undeclared = {d: sorted(f) for d, f in used.items() if d not in main}
    assert not undeclared, f"imported by the package but not in [project] dependencies: {undeclared}"


def test_the_tests_import_only_declared_dependencies():
    main, extras = _declared()
    used = _distributions(_top_level_imports(_test_files()))
    undeclared = {d: sorted(f) for d, f in used.items() if d not in main | extras["test"]}
    assert not undeclared, f"imported by tests, mailsync/testing or scripts but not declared: {undeclared}"


def test_every_declared_dependency_is_imported():
    main, extras = _declared()
    in_package = set(_distributions(_top_level_imports(_package_files())))
    in_tests = set(_distributions(_top_level_imports(_test_files())))
    pytest_plugins = {_normal(d.metadata["Name"]) for d in md.distributions()
                      if any(ep.group == "pytest11" for ep in d.entry_points)}
    unused_main = sorted(main - in_package)
    assert not unused_main, f"declared in [project] dependencies, imported nowhere in mailsync/: {unused_main}"
    for extra, names in extras.items():
        if extra in SERVER_EXTRAS:
            continue
        unused = sorted(names - in_package - in_tests - pytest_plugins)
        assert not unused, f"declared in the {extra!r} extra, imported nowhere: {unused}"


def test_the_scan_sees_what_it_should():
    """The checks above can fail: the scan finds the imports it must find."""
    package = _top_level_imports(_package_files())
    assert {"sqlalchemy", "click", "msal"} <= set(package)
    assert "imapclient" not in package  # the tests' second client only
    assert "authlib" not in package  # test support only
    tests = _top_level_imports(_test_files())
    assert {"pytest", "hypothesis", "joserfc", "cryptography", "imapclient"} <= set(tests)
    assert "mailsync/testing/oauth_server.py" in tests["authlib"]


def test_the_package_is_marked_typed():
    """PEP 561: the py.typed marker is in the package and shipped with it."""
    assert (REPO / "mailsync" / "py.typed").is_file()
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["mailsync"]


def test_a_server_extra_is_one_pinned_server_that_its_script_installs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extra, script in SERVER_EXTRAS.items():
        (requirement,) = project["optional-dependencies"][extra]
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", requirement), requirement
        assert f'["{extra}"]' in (REPO / script).read_text()  # the script reads the pin from there
        used = _top_level_imports(_test_files()) | _top_level_imports(_package_files())
        assert not {d for d in _distributions(used) if d == _name(requirement)}, f"{requirement} is imported"
