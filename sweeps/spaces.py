"""Search spaces as data: YAML files in ``search_spaces/``, one per head.

Each entry names a fit-config key with a Tuning-Playbook role — ``scientific`` (the ablated
factor), ``nuisance`` (tuned) or ``fixed`` — and, for nuisance entries, a distribution. A
malformed file is an error that names the file and the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from erc.config import FLAT_KEYS

ROLES = ("scientific", "nuisance", "fixed")
DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")
SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"


class SpaceError(ValueError):
    """A malformed search-space file; the message names the entry."""


@dataclass(frozen=True)
class Param:
    name: str
    role: str
    distribution: str | None = None
    low: float | None = None
    high: float | None = None
    values: tuple | None = None
    value: Any = None

    def to_optuna(self) -> BaseDistribution:
        """A nuisance parameter's Optuna distribution (bounds inclusive, as written)."""
        if self.distribution == "loguniform":
            return FloatDistribution(self.low, self.high, log=True)
        if self.distribution == "uniform":
            return FloatDistribution(self.low, self.high)
        if self.distribution == "int":
            return IntDistribution(int(self.low), int(self.high))
        return CategoricalDistribution(list(self.values))


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    params: dict[str, Param]

    def by_role(self, role: str) -> dict[str, Param]:
        return {k: p for k, p in self.params.items() if p.role == role}

    def distributions(self) -> dict[str, BaseDistribution]:
        """What a search samples: the nuisance parameters as Optuna distributions."""
        return {k: p.to_optuna() for k, p in self.by_role("nuisance").items()}

    def held(self) -> dict[str, Any]:
        """What a search holds constant: the fixed and scientific entries' values."""
        return {k: p.value for k, p in self.params.items() if p.role != "nuisance"}


def _entry(path: Path, name: str, spec: Any, known: set[str]) -> Param:
    where = f"{path}: entry {name!r}"
    if name not in known:
        raise SpaceError(f"{where}: not a training hyper-parameter (known: {sorted(known)})")
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: expected a mapping like {{role: nuisance, distribution: uniform, low: 0, high: 1}}")
    role = spec.get("role")
    if role not in ROLES:
        raise SpaceError(f"{where}: role {role!r} is not one of {list(ROLES)}")
    extra = set(spec) - {"role", "distribution", "low", "high", "values", "value"}
    if extra:
        raise SpaceError(f"{where}: unknown field(s) {sorted(extra)}")
    if role != "nuisance":
        if "value" not in spec:
            raise SpaceError(f"{where}: a {role} parameter needs a 'value'")
        return Param(name, role, value=spec["value"])
    dist = spec.get("distribution")
    if dist not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: distribution {dist!r} is not one of {list(DISTRIBUTIONS)}")
    if dist == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: 'choice' needs a non-empty list 'values'")
        return Param(name, role, dist, values=tuple(values))
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise SpaceError(f"{where}: {dist!r} needs numeric 'low' and 'high'") from None
    if not low < high:
        raise SpaceError(f"{where}: low ({low}) must be below high ({high})")
    if dist == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0")
    if dist == "int" and (low != int(low) or high != int(high)):
        raise SpaceError(f"{where}: 'int' bounds must be integers")
    return Param(name, role, dist, low=low, high=high)


def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space YAML (a file path, or a head name such as ``outer``)."""
    path = Path(path)
    if not path.suffix and not path.exists():
        path = SPACES_DIR / f"{path}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such search-space file (shipped: {sorted(SPACES_DIR.glob('*.yaml'))})") from None
    except yaml.YAMLError as err:
        raise SpaceError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not data:
        raise SpaceError(f"{path}: expected a mapping of parameter name → spec")
    known = set(FLAT_KEYS)
    return SearchSpace(path, {name: _entry(path, name, spec, known) for name, spec in data.items()})
