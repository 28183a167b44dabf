"""The three packages are layered (docs/architecture.md): each imports only what is below it.

* ``erc`` is a plain PyTorch library: no module of it imports ray or mlflow (DESIGN §1). The sweep
  layer adapts erc to Tune and MLflow; if erc imported either, a researcher could not use the method
  without them, and layering would drift.
* ``analysis`` reads finished runs: it never imports ray.
* ``sweeps`` imports no ``analysis`` module when it is imported (the report at the end of a sweep is
  imported inside the function that makes it): the contract both sides need is ``erc.contract``.

Every module of a package is imported in a fresh interpreter in which the blocked packages cannot be
imported; for ``erc`` and ``analysis`` the source is also scanned, to catch imports inside functions
that an import test never runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import erc

BLOCKED = ("ray", "mlflow")  # erc's
ERC_DIR = Path(erc.__file__).parent
REPO = ERC_DIR.parent
# package -> what importing any of its modules must not import
LAYERS = {"erc": ("ray", "mlflow"), "analysis": ("ray",), "sweeps": ("analysis",)}

# Run in a fresh interpreter: installs the blocker first, then imports every module of the package.
CHECK = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys, traceback

    blocked, package = {blocked!r}, {package!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"blocked import of {{name}}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    already = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    root = importlib.import_module(package)
    failures, imported = {{}}, [package]
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except ImportError:
            failures[info.name] = traceback.format_exc(limit=-3)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in blocked)
    print(json.dumps({{"imported": imported, "failures": failures, "already": already, "leaked": leaked}}))
""")


def import_everything(package: str, search_path: Path, blocked: tuple[str, ...] = BLOCKED) -> dict:
    code = CHECK.format(blocked=blocked, package=package)
    proc = subprocess.run([sys.executable, "-c", code], cwd=search_path, capture_output=True, text=True,
                          check=False, timeout=300, env={**os.environ, "PYTHONPATH": str(search_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("package", list(LAYERS))
def test_every_module_imports_without_the_layers_above(package):
    result = import_everything(package, REPO, LAYERS[package])
    assert not result["failures"], "\n".join(f"{m}:\n{tb}" for m, tb in result["failures"].items())
    assert not result["already"] and not result["leaked"]
    root = REPO / package
    expected = {package + "." + ".".join(p.relative_to(root).with_suffix("").parts)
                for p in root.rglob("*.py") if p.name != "__init__.py"}
    assert expected <= set(result["imported"])  # walk_packages really reached every module


def test_the_import_check_catches_an_import_at_module_level(tmp_path):
    # The check itself must fail on a violation: a package whose submodule imports mlflow on import.
    pkg = tmp_path / "layered"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "sub" / "bad.py").write_text("def f():\n    pass\n\nimport mlflow.tracking  # noqa\n")
    result = import_everything("layered", tmp_path)
    assert set(result["failures"]) == {"layered.sub.bad"}
    assert "blocked import of mlflow" in result["failures"]["layered.sub.bad"]
    assert "layered.clean" in result["imported"]


def import_re(blocked: tuple[str, ...]) -> re.Pattern:
    names = "|".join(blocked)
    return re.compile(
        rf"^\s*(?:import|from)\s+(?:{names})\b"  # import ray / from mlflow.x import y
        rf"|\bimport\s+[\w., ]*\b(?:{names})\b"  # import os, ray
        rf"|(?:import_module|__import__)\(\s*[\"'](?:{names})\b",  # importlib by name
        re.MULTILINE,
    )


IMPORT_RE = import_re(BLOCKED)


@pytest.mark.parametrize("package", ["erc", "analysis"])  # sweeps may import analysis inside a function
def test_no_source_imports_the_layers_above_anywhere(package):
    # Imports inside functions never run at module import; find them in the text.
    pattern = import_re(LAYERS[package])
    hits = [f"{path.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}: {m.group().strip()}"
            for path in sorted((REPO / package).rglob("*.py"))
            for text in [path.read_text(encoding="utf-8")]
            for m in pattern.finditer(text)]
    assert not hits, hits


def test_the_source_scan_catches_imports_inside_functions():
    lines = ["    import ray", "    from mlflow.tracking import MlflowClient", "import os, ray",
             "    importlib.import_module('mlflow')", "x = __import__(\"ray.tune\")"]
    assert all(IMPORT_RE.search(line) for line in lines)
    assert not any(IMPORT_RE.search(line) for line in ["import rayon", "from mlflowish import x", "import array"])
