"""Where a report's files go: the output directory, the two renderings of its document, and MLflow (the
sweep's parent run, or an analysis run for a selection without one)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.document import Document, to_html, to_markdown
from analysis.options import OUT_DIR, slugify
from analysis.trials import Sweep, Trials
from erc import contract as C
from erc.contract import search_all

if TYPE_CHECKING:
    from mlflow import MlflowClient


def artifact_dir(sub: str, values: str) -> str:
    """``report`` or ``compare`` for the default values; ``report/best`` for ``best/<m>``.

    An optimistic (best/) report never overwrites the default one.
    """
    return sub if values == C.DEFAULT_VALUES else f"{sub}/{values}"


def default_out(trials: Trials, sub: str) -> Path:
    """``analysis_out/<sweep>/<sub>`` (``<sweep>-filtered`` for a filtered selection)."""
    name = trials.sweep.name if not trials.sweep.filter_string else f"{trials.sweep.name}-filtered"
    return Path(OUT_DIR) / slugify(name) / artifact_dir(sub, trials.values)


def write_document(doc: Document, out: Path, name: str) -> tuple[str, list[Path]]:
    """``<name>.md`` and the self-contained ``<name>.html``; returns the Markdown text and both paths."""
    text = to_markdown(doc.blocks)
    md, page = out / f"{name}.md", out / f"{name}.html"
    md.write_text(text, encoding="utf-8")
    page.write_text(to_html(doc), encoding="utf-8")
    return text, [md, page]


def analysis_run(client: MlflowClient, sweep: Sweep) -> str:
    """Where the files of a selection without a parent run go: one run per scope, reused on reruns.

    Tagged ``role=analysis``, so that no reader takes it for a trial.
    """
    found = [r for r in search_all(client, sweep.experiment_id, C.tag_filter({C.ROLE: C.ANALYSIS_ROLE}))
             if r.data.tags.get(C.ANALYSIS_SCOPE) == sweep.scope]
    if found:
        return found[0].info.run_id
    run = client.create_run(sweep.experiment_id, run_name=f"analysis: {sweep.scope}"[:250],
                            tags={C.ROLE: C.ANALYSIS_ROLE, C.ANALYSIS_SCOPE: sweep.scope})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


def log_files(client: MlflowClient | None, trials: Trials, files: Sequence[Path], directory: str) -> None:
    """Log ``files`` under ``directory`` to the selection's parent run (else its analysis run)."""
    if client is None:  # values from a file: there is no run to log to
        return
    run_id = trials.sweep.parent_run_id or analysis_run(client, trials.sweep)
    # File by file, not the whole directory: --out may point at a folder holding other things.
    for path in files:
        client.log_artifact(run_id, str(path), directory)
    print(f"logged {len(files)} files to run {run_id} under {directory}/", file=sys.stderr)
