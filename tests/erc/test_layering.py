"""erc is a plain PyTorch library: no module of it imports ray or mlflow (DESIGN §1).

The sweep layer adapts erc to Tune and MLflow; if erc imported either, a researcher could not use
the method without them, and layering would drift. Every module is imported in a fresh interpreter
in which ``ray`` and ``mlflow`` cannot be imported; the source is also scanned, to catch imports
inside functions that an import test never runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import erc

BLOCKED = ("ray", "mlflow")
ERC_DIR = Path(erc.__file__).parent

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


def import_everything(package: str, search_path: Path) -> dict:
    code = CHECK.format(blocked=BLOCKED, package=package)
    proc = subprocess.run([sys.executable, "-c", code], cwd=search_path, capture_output=True, text=True,
                          check=False, timeout=300, env={**os.environ, "PYTHONPATH": str(search_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_erc_module_imports_without_ray_or_mlflow():
    result = import_everything("erc", ERC_DIR.parent)
    assert not result["failures"], "\n".join(f"{m}:\n{tb}" for m, tb in result["failures"].items())
    assert not result["already"] and not result["leaked"]
    expected = {"erc." + ".".join(p.relative_to(ERC_DIR).with_suffix("").parts)
                for p in ERC_DIR.rglob("*.py") if p.name != "__init__.py"}
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


IMPORT_RE = re.compile(
    rf"^\s*(?:import|from)\s+(?:{'|'.join(BLOCKED)})\b"  # import ray / from mlflow.x import y
    rf"|\bimport\s+[\w., ]*\b(?:{'|'.join(BLOCKED)})\b"  # import os, ray
    rf"|(?:import_module|__import__)\(\s*[\"'](?:{'|'.join(BLOCKED)})\b",  # importlib by name
    re.MULTILINE,
)


def test_no_erc_source_imports_ray_or_mlflow_anywhere():
    # Imports inside functions never run at module import; find them in the text.
    hits = [f"{path.relative_to(ERC_DIR.parent)}:{text[:m.start()].count(chr(10)) + 1}: {m.group().strip()}"
            for path in sorted(ERC_DIR.rglob("*.py"))
            for text in [path.read_text(encoding="utf-8")]
            for m in IMPORT_RE.finditer(text)]
    assert not hits, hits


def test_the_source_scan_catches_imports_inside_functions():
    lines = ["    import ray", "    from mlflow.tracking import MlflowClient", "import os, ray",
             "    importlib.import_module('mlflow')", "x = __import__(\"ray.tune\")"]
    assert all(IMPORT_RE.search(line) for line in lines)
    assert not any(IMPORT_RE.search(line) for line in ["import rayon", "from mlflowish import x", "import array"])
