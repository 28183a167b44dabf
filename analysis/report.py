"""Assemble a report from a sweep: Markdown (printed), one HTML page, CSV, LaTeX and PNG, logged to MLflow.

Per comparison the report shows first the paper's table (the seed's 8 columns, pingouin's paired
t-test), then the corrections in a second table, then one sentence in plain words. ``sweep_report`` is
what ``sweeps/ablation.py`` calls when a sweep ends; ``compare_report`` backs ``python -m analysis
compare``. Both read runs from MLflow or, with ``values_csv``, per-fold values from a CSV file; both take
one :class:`~analysis.options.ReportOptions`.

The parts live beside this module, one job each: :mod:`analysis.tables` (the numbers),
:mod:`analysis.prose` (the words), :mod:`analysis.formatting` (cells, LaTeX, CSV),
:mod:`analysis.document` (Markdown and HTML), :mod:`analysis.plots` (figures) and
:mod:`analysis.publish` (files and MLflow).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from analysis.document import (
    Block,
    Caveat,
    Document,
    Figure,
    Figures,
    Heading,
    Notes,
    Table,
    Text,
    to_markdown,
)
from analysis.formatting import csv_frame, format_frame, latex_table
from analysis.options import DEFAULT_METRICS, Contrast, ReportOptions, slugify
from analysis.pairing import MissingArmError
from analysis.plots import arm_plot, paired_plot
from analysis.prose import (
    ALPHA,
    BEST_VALUES_NOTE,
    ORACLE_VALUES_NOTE,
    VALUES_LABEL,
    footnotes,
    in_words,
    table_intro,
)
from analysis.publish import artifact_dir, default_out, log_files, write_document
from analysis.reader import load_trials
from analysis.selection import find_sweep, get_client
from analysis.tables import (
    TableResult,
    arm_summary,
    arm_summary_display,
    arm_table_metrics,
    arm_values,
    compare_table,
    correction_columns,
    paper_columns,
)
from analysis.trials import Trials
from analysis.values import ValuesFile, load_values_csv
from erc import contract as C
from erc.vocab import REGRESSION_METRICS

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The paper's comparisons. The seed prints the first two; the original's results notebook computes its
# label table against hard (one-hot) labels, the design card names soft labels as PeakL's baseline: both
# are shown whenever the arms are there.
PAPER_TABLES = (
    Contrast(factor=C.FUSION, treatment="outer", baseline="concat", where={C.LABELS: "peakl"}),
    Contrast(factor=C.LABELS, treatment="peakl", baseline="soft", where={C.FUSION: "outer"}),
    Contrast(factor=C.LABELS, treatment="peakl", baseline="hard", where={C.FUSION: "outer"}),
)
REPORT_ARTIFACT_DIR = C.REPORT_DIR
FRIEDMAN_FILE = "friedman.csv"
POSTHOC_FILE = "posthoc.csv"
COMPARE_ARTIFACT_DIR = C.COMPARE_DIR


def load(options: ReportOptions, factors: Sequence[str] = ()) -> tuple[MlflowClient | None, Trials]:
    """(MLflow client, trials) of the options' runs; the client is None when the values come from a CSV file.

    ``factors`` are columns of a values file to read as factors even when they hold numbers.
    """
    if options.values_csv is not None:
        return None, load_values_csv(options.values_csv, factors)
    client = get_client(options.tracking_uri)
    selection = find_sweep(client, options.experiment, options.sweep, filter_string=options.filter_string,
                           all_runs=options.all_runs)
    return client, load_trials(client, selection, options.values)


def paper_contrast(trials: Trials, contrast: Contrast) -> Contrast:
    """The paper's ``contrast`` as these runs can hold it.

    A fixed factor no run carries is dropped (runs that vary the fusion alone compare fusions outright);
    a compared factor no run carries is a :class:`MissingArmError`.
    """
    if not trials.carries(contrast.factor):
        raise MissingArmError(f"no run carries the factor {contrast.factor!r} (as a tag, a param or a column)")
    return dataclasses.replace(contrast, where={k: v for k, v in contrast.where.items() if trials.carries(k)})


def fusion_arms(trials: Trials) -> tuple[list[str], dict[str, str]]:
    """The fusions the runs hold (the report's order) and the labels value they are compared at: the
    paper's fusion table's (peakl) when the runs hold several labels arms and it is one, else the first."""
    if not trials.carries(C.FUSION):
        return [], {}
    present = {str(f) for f in trials.column(C.FUSION).dropna()}
    order = C.FACTOR_ORDER[C.FUSION]
    fusions = sorted(present, key=lambda f: (order.index(f) if f in order else len(order), f))
    labels = sorted({str(v) for v in trials.column(C.LABELS).dropna()}) if trials.carries(C.LABELS) else []
    if len(labels) < 2:
        return fusions, {}
    paper = PAPER_TABLES[0].where[C.LABELS]
    return fusions, {C.LABELS: paper if paper in labels else labels[0]}


def control_contrasts(trials: Trials, options: ReportOptions) -> list[Contrast]:
    """With more than two fusions: every other fusion against the control, at the fusions' labels value
    (the paper's outer vs concat table is not repeated)."""
    fusions, where = fusion_arms(trials)
    if len(fusions) <= 2 or options.control not in fusions:
        return []
    paper = PAPER_TABLES[0]
    return [Contrast(factor=C.FUSION, treatment=f, baseline=options.control, where=where) for f in fusions
            if f != options.control and not (options.control == paper.baseline and f == paper.treatment)]


def write_many_arms(trials: Trials, options: ReportOptions, out_dir: Path) -> tuple[list[Path], list[Block]]:
    """More than two fusions (DESIGN §13): the Friedman test per metric over the fusions' fold values, the
    post-hoc test (``options.posthoc``, against ``options.control``) and a critical-difference diagram per
    metric — ``friedman.csv`` (metric, statistic, p, k, n), ``posthoc.csv``, ``cd_<metric>.png``."""
    from analysis.many_arms import cd_diagram, fold_matrix, friedman_table, many_arms

    fusions, where = fusion_arms(trials)
    runs = trials.runs
    if where:
        runs = runs[trials.column(C.LABELS) == where[C.LABELS]]
    blocks_by = [C.FOLD, C.SEED] if runs[C.SEED].nunique() > 1 else [C.FOLD]
    metrics = [m for m in (options.metrics or DEFAULT_METRICS) if m in trials.metrics]
    cond = f", labels={where[C.LABELS]}" if where else ""
    heading = Heading(f"{len(fusions)} fusions: Friedman test and post-hoc against {options.control}{cond}", 2)
    try:
        if options.control not in fusions:
            raise ValueError(f"the control fusion {options.control!r} is not among the runs' fusions "
                             f"{fusions} (choose one with --control)")
        results = [many_arms(fold_matrix(runs, m, arm=C.FUSION, blocks=blocks_by, arms=fusions), m,
                             control=options.control, method=options.posthoc) for m in metrics]
    except ValueError as err:
        print(f"warning: Friedman test not computed: {err}", file=sys.stderr)
        return [], [heading, Text(f"Not computed: {err}")]
    friedman = friedman_table(results)
    friedman.to_csv(out_dir / FRIEDMAN_FILE, index=False)
    import pandas as pd

    pd.concat([r.posthoc.assign(metric=r.metric) for r in results]).to_csv(out_dir / POSTHOC_FILE, index=False)
    pngs = [cd_diagram(r, out_dir / f"cd_{slugify(r.metric)}.png") for r in results]
    p_col = "p_holm" if options.posthoc == "holm" else "p_nemenyi"
    ranks = pd.DataFrame(index=pd.Index(fusions, name=C.FUSION))
    for r in results:
        post = r.posthoc.set_index("arm")
        ranks[r.metric] = [
            f"{r.ranks[f]:.2f} (control)" if f == options.control else
            f"{r.ranks[f]:.2f} (p = {post.loc[f, p_col]:.3g}){' *' if post.loc[f, 'significant'] else ''}"
            for f in fusions]
    shown = friedman.set_index("metric")
    shown = pd.DataFrame({"χ²_F": [f"{v:.3f}" for v in shown["statistic"]], "p": [f"{v:.3g}" for v in shown["p"]],
                          "k": shown["k"].astype(str), "n": shown["n"].astype(str)}, index=shown.index)
    test = ("Holm-corrected z-tests of each fusion's mean rank against the control's (Demšar 2006, §3.2.2)"
            if options.posthoc == "holm" else "Nemenyi's test against the control (all pairs in posthoc.csv)")
    blocks: list[Block] = [
        heading,
        Text(f"With {len(fusions)} fusions, pairwise tables multiply comparisons: the Friedman test asks "
             f"whether the fusions differ at all, over {results[0].n if results else 0} folds"
             f"{' × seeds' if len(blocks_by) > 1 else ''} as blocks{cond}; then {test}. "
             "The paired tables above compare each fusion with the control one at a time, uncorrected across them."),
        Table(shown, "metric", "Friedman test per metric (scipy.stats.friedmanchisquare)"),
        Text(f"Mean rank per fusion and metric (1 = best), the post-hoc p-value against {options.control}; "
             "* = significant at 0.05."),
        Table(ranks, C.FUSION, "Mean ranks and post-hoc p-values"),
        Figures("Critical-difference diagrams: fusions on their mean rank, joined where Nemenyi's test does "
                "not separate them at 0.05", pngs),
    ]
    return [out_dir / FRIEDMAN_FILE, out_dir / POSTHOC_FILE, *pngs], blocks


def header(trials: Trials) -> list[Block]:
    """The report's title, what was read (where from, how many runs, arms, folds, seeds) and its caveats."""
    sw = trials.sweep
    runs = trials.runs
    folds = sorted(runs[C.FOLD].unique()) if not runs.empty else []
    seeds = sorted(s for s in runs[C.SEED].unique() if s) if not runs.empty else []
    if isinstance(sw, ValuesFile):
        title = f"Fold values from {sw.path.name}"
        where, what = f"File `{sw.path}`", "rows"
    elif sw.parent_run_id is not None:
        title = f"Sweep {sw.name}"
        where, what = f"Experiment `{sw.experiment_name}`, parent run `{sw.parent_run_id}`", "finished grid trials"
    else:
        title = f"Runs of experiment {sw.experiment_name}"
        where = (f"Experiment `{sw.experiment_name}`, "
                 f"{f'runs matching `{sw.filter_string}`' if sw.filter_string else 'all runs'}")
        what = "finished grid trials"
    if sw.parent_run_id is not None and sw.filter_string:
        where += f", runs matching `{sw.filter_string}`"
    values = "" if isinstance(sw, ValuesFile) else f"; values: {VALUES_LABEL.get(trials.values, trials.values)}"
    blocks: list[Block] = [
        Heading(title, 1),
        Text(f"{where}: {len(runs)} {what}, arms {', '.join(trials.arms) or 'none'}, "
             f"folds {', '.join(map(str, folds)) or 'none'}"
             + (f", seeds {', '.join(seeds)}" if len(seeds) > 1 else "") + f"{values}."),
    ]
    blocks += [Caveat(n) for n in trials.notes]
    return blocks


def corpus_blocks(client: MlflowClient | None, trials: Trials) -> tuple[list[Block], list[Block]]:
    """What the sweep's parent run says about its corpora, as (caveats for the top, the agreement
    section): the corpora's notes (e.g. CREMA-D's text carries no emotion), that a corpus without
    valence/arousal has no CCC metrics, and the rater agreement per corpus (the metrics
    ``agreement/<corpus>/<statistic>``). The agreement describes the data, not the comparison, so it
    goes after the tables: the paper's table stays the report's first."""
    caveats: list[Block] = []
    agreement: list[Block] = []
    parent = getattr(trials.sweep, "parent_run_id", None)
    if client is not None and parent is not None:
        run = client.get_run(parent)
        notes = run.data.tags.get(C.CORPUS_NOTES, "")
        caveats += [Caveat(note) for note in notes.split("\n") if note]
        values: dict[str, dict[str, float]] = {}
        for key, value in run.data.metrics.items():
            if key.startswith(C.AGREEMENT_PREFIX):
                corpus, statistic = key.removeprefix(C.AGREEMENT_PREFIX).rsplit("/", 1)
                values.setdefault(corpus, {})[statistic] = value
        if values:
            frame = pd.DataFrame.from_dict(values, orient="index").sort_index()
            frame = frame.map(lambda v: "" if pd.isna(v) else f"{v:.0f}" if float(v).is_integer() and v > 1
                              else f"{v:.3f}")
            agreement += [Heading("Rater agreement", 2),
                          Text("Krippendorff's α of the raters' categories (nominal) and of each dimension "
                               "(interval); Fleiss' κ where every item has the same number of raters."),
                          Table(frame, "corpus", "Rater agreement per corpus")]
    if not trials.runs.empty and not any(m in trials.metrics for m in REGRESSION_METRICS):
        caveats.append(Caveat("No valence/arousal ratings in these runs' corpus: the loss was the classification "
                              "loss alone, and the tables have no CCC rows."))
    return caveats, agreement


def write_table(res: TableResult, out_dir: Path) -> tuple[list[Path], list[Block]]:
    """Write ``<slug>.csv/.tex/.md/.png``; return the paths and the table's report blocks.

    The blocks: a heading, the intro, the paper's table, the corrections table (when there are any
    columns beyond the seed's), the sentence in plain words and the fold-paired figure.
    """
    c = res.comparison
    slug = c.slug
    paper = format_frame(paper_columns(res.table))
    corrections = format_frame(correction_columns(res.table))
    csv_frame(res.table).to_csv(out_dir / f"{slug}.csv")
    tex = latex_table(paper, "metric", f"{c.label}: fold-paired t-tests (pingouin)", slug.replace("_", "-"))
    if len(corrections.columns):
        tex += "\n" + latex_table(corrections, "metric", f"{c.label}: corrections",
                                  slug.replace("_", "-") + "-corrections")
    (out_dir / f"{slug}.tex").write_text(tex, encoding="utf-8")
    png = paired_plot(
        c.treatment_values,
        c.baseline_values,
        out_dir / f"{slug}.png",
        treatment_name=c.treatment,
        baseline_name=c.baseline,
        title=c.label,
    )
    blocks: list[Block] = [
        Heading(c.label, 2),
        Text(table_intro(res)),
        Table(paper, "metric", "The paper's table: pingouin.ttest(treatment, baseline, paired=True)"),
    ]
    if len(corrections.columns):
        blocks.append(Table(corrections, "metric", "Corrections: Nadeau–Bengio, d_z, detectable effect, "
                                                   "Wilcoxon, Holm" + (", Bayesian" if "P(rope)" in corrections
                                                                        else "")))
    blocks += [Text(in_words(res)), Figure(png, "Fold-paired values")]
    md = out_dir / f"{slug}.md"
    md.write_text(to_markdown(blocks), encoding="utf-8")
    return [out_dir / f"{slug}.csv", out_dir / f"{slug}.tex", md, png], blocks


def write_arm_plots(trials: Trials, out_dir: Path, metrics: Sequence[str] | None = None) -> list[Path]:
    """One PNG per metric, ``arms_<metric>.png``: every arm's fold values (box + points, folds joined)."""
    files = []
    for metric in metrics or trials.metrics:
        if metric not in trials.runs.columns:
            continue
        values = arm_values(trials, metric)
        if not any(values.values()):
            continue
        title = f"{metric}: fold values per arm\n{trials.sweep.description}"
        files.append(arm_plot(values, out_dir / f"arms_{slugify(metric)}.png", metric, title=title))
    return files


def write_arms(trials: Trials, out_dir: Path) -> tuple[list[Path], list[Block]]:
    """The per-arm section: ``arms.csv`` (every metric), ``arms.tex`` and one figure per shown metric."""
    summary = arm_summary(trials)
    shown_metrics = arm_table_metrics(trials)
    shown = arm_summary_display(summary, shown_metrics)
    summary.to_csv(out_dir / "arms.csv")
    (out_dir / "arms.tex").write_text(
        latex_table(shown, "arm", f"{trials.sweep.name}: mean ± sd over folds per arm", "arms"), encoding="utf-8"
    )
    figures = write_arm_plots(trials, out_dir, shown_metrics)
    source = "" if isinstance(trials.sweep, ValuesFile) else f", {VALUES_LABEL.get(trials.values, trials.values)}"
    blocks: list[Block] = [
        Heading("Per-arm mean ± sd", 2),
        Text(f"Over folds (and seeds), sd with ddof = 1{source}; every logged metric is in `arms.csv`."),
        Table(shown, "arm", "Mean ± sd per arm"),
    ]
    if figures:
        blocks.append(Figures("Fold values per arm, one figure per metric", figures))
    return [out_dir / "arms.csv", out_dir / "arms.tex", *figures], blocks


def write_optimism(client: MlflowClient, trials: Trials, options: ReportOptions, out_dir: Path
                   ) -> tuple[list[Path], list[Block]]:
    """The optimism section (:mod:`analysis.optimism`): ``optimism.csv`` (per arm and metric, the mean
    ``oracle − selected`` and ``best − selected``), ``optimism_conclusions.csv`` (each paper table's
    verdicts on each set of values) and one sentence. Nothing when the runs logged no oracle values."""
    from analysis.optimism import (
        ORACLE,
        SELECTED,
        conclusions_sentence,
        conclusions_table,
        optimism_display,
        optimism_table,
    )

    others = {values: load_trials(client, trials.sweep, values, runs=trials.source or None)
              for values in C.VALUE_PREFIXES if values != SELECTED}
    if not others[ORACLE].metrics:  # runs from before honest selection (or logged elsewhere)
        return [], []
    metrics = arm_table_metrics(trials)
    table = optimism_table({SELECTED: trials.runs, **{v: t.runs for v, t in others.items()}}, metrics,
                           trials.arms)
    tables: dict[str, dict[str, object]] = {}
    # a verdict reads the paper table's T and p only: no corrections, no Bayesian test (a third of the time)
    verdict_options = dataclasses.replace(options, extended=False, rope=None)
    for values, source in {SELECTED: trials, **others}.items():
        tables[values] = {}
        for contrast in PAPER_TABLES:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = compare_table(source, paper_contrast(source, contrast), verdict_options)
            except ValueError:
                continue
            tables[values][contrast.label] = res.table
    verdicts = conclusions_table(tables, ALPHA)  # type: ignore[arg-type]
    sentence = conclusions_sentence(verdicts, ALPHA)
    csv_frame(table).to_csv(out_dir / "optimism.csv")
    verdicts.to_csv(out_dir / "optimism_conclusions.csv")
    blocks: list[Block] = [
        Heading("Optimism of choosing the epoch on the reported fold", 2),
        Text("`selected` values come from the epoch chosen on a dev split carved from the training sessions; "
             "`oracle` from the epoch the reported fold itself picks (what the original code reports), `best` "
             "from each metric's own best epoch. Each cell: mean `oracle − selected` / `best − selected` over "
             "folds (positive: the optimistic value looks better; `optimism.csv` has the numbers):"),
        Table(optimism_display(table), "arm", "Mean oracle − selected / best − selected over folds"),
        Text(sentence),
    ]
    changed = verdicts[verdicts["changes"] == "yes"]
    if len(changed):
        blocks.append(Table(changed.reset_index(level="metric"), "table",
                            f"The verdicts (α = {ALPHA}) that differ between the sets of values"))
    return [out_dir / "optimism.csv", out_dir / "optimism_conclusions.csv"], blocks


def write_robustness(client: MlflowClient, trials: Trials, options: ReportOptions, out_dir: Path
                     ) -> tuple[list[Path], list[Block]]:
    """The robustness section (:mod:`analysis.robustness`): ``robustness_<metric>.png`` per shown
    metric, ``robustness.csv`` (MultiBench's numbers for every shown metric) and the first metric's
    table. Nothing when the runs logged no ``robust/`` values."""
    import pandas as pd

    from analysis.robustness import figure_name, long_frame, robustness_plot, robustness_table
    from analysis.selection import selected_runs

    keep = set(trials.runs["run_id"])
    by_id = {r.info.run_id: r for r in selected_runs(client, trials.sweep) if r.info.run_id in keep}
    wide = pd.DataFrame([{**{k: row[k] for k in (C.FOLD, C.SEED, C.ARM)}, **by_id[row["run_id"]].data.metrics}
                         for _, row in trials.runs.iterrows() if row["run_id"] in by_id])
    metrics = arm_table_metrics(trials)
    if not wide.empty:  # arms in the paper's order: the first is the effective-robustness reference
        wide = wide.sort_values(C.ARM, key=lambda arms: arms.map(trials.arms.index), kind="stable")
    long = long_frame(wide, metrics) if not wide.empty else wide
    if long.empty or not (long["kind"] != "clean").any():
        return [], []
    figures, frames = [], []
    for metric in metrics:
        if not (long["metric"] == metric).any():
            continue
        figures.append(robustness_plot(long, metric, out_dir / figure_name(metric),
                                       title=f"{metric} under a missing or noisy modality\n{trials.sweep.description}"))
        frames.append(robustness_table(long, metric).assign(metric=metric))
    numbers = pd.concat(frames)
    csv_frame(numbers).to_csv(out_dir / "robustness.csv")
    first = frames[0]
    blocks: list[Block] = [
        Heading("Robustness to a missing or noisy modality", 2),
        Text(f"Held-out folds, selected weights, one modality perturbed: missing = its training-mean input, "
             f"noise σ × its per-feature training std (0 = clean). Relative robustness: the area under the "
             f"metric-vs-σ curve over the σ span (MultiBench); effective: the curve's excess over the reference "
             f"arm `{first.attrs['reference']}` shifted to the same clean value, summed over σ > 0; `_norm`: "
             f"max–min normalised across arms (1 = most robust). {metrics[0]}:"),
        Table(format_frame(first.drop(columns="metric").reset_index(level="modality")), "arm",
              f"Robustness numbers: {metrics[0]}"),
        Figures("Robustness curves per arm, one figure per metric", figures),
    ]
    return [out_dir / "robustness.csv", *figures], blocks


def sweep_report(options: ReportOptions | str | None = None, /, **changes) -> str:
    """The paper's tables plus per-arm mean ± sd: printed, saved (Markdown, HTML, CSV, LaTeX, PNG), logged.

    ``options`` (:class:`~analysis.options.ReportOptions`; a string is the experiment's name) with
    ``changes`` (field names of ReportOptions) applied, e.g. ``sweep_report("erc-sweeps", sweep="demo")``.

    Tables: fusion (outer vs concat at labels=peakl) and labels (peakl vs soft, peakl vs hard at
    fusion=outer); a fixed factor no run carries is dropped (runs varying only the fusion compare outer
    and concat outright); a table whose factor, arms or folds the runs lack is replaced by a message
    saying why. Files go to ``out_dir`` (default ``analysis_out/<sweep>/report``) and, with
    ``log_to_mlflow``, to the parent run's artifacts under ``report/`` (an analysis run's when the runs
    have no parent): ``report.md``, the self-contained ``report.html`` and the tables and figures they
    show. ``values="best"`` reads ``best/<m>`` (optimistic, labelled so) and writes under
    ``report/best``. Returns the Markdown text.
    """
    options = ReportOptions.of(options, **changes)
    client, trials = load(options)
    out = Path(options.out_dir) if options.out_dir is not None else default_out(trials, REPORT_ARTIFACT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    caveats, agreement = corpus_blocks(client, trials)
    top = [*header(trials), *caveats]
    doc = Document(title=top[0].text, blocks=top)
    notes: list[str] = []
    built = 0
    sizes_logged = True
    caught: list[str] = []
    for contrast in (*PAPER_TABLES, *control_contrasts(trials, options)):
        try:
            contrast = paper_contrast(trials, contrast)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                res = compare_table(trials, contrast, options)
            caught += [str(w.message) for w in seen]
        except ValueError as err:  # MissingArmError, missing folds: say so, keep the rest of the report
            reason = "skipped" if isinstance(err, MissingArmError) else "not computed"
            doc.add(Heading(contrast.label, 2), Text(f"Table {reason}: {err}"))
            print(f"warning: table {contrast.label} {reason}: {err}", file=sys.stderr)
            continue
        written, blocks = write_table(res, out)
        files += written
        doc.add(*blocks)
        notes += res.notes
        built += 1
        sizes_logged = sizes_logged and res.comparison.sizes_logged
    # The tables usually raise the same caveat (e.g. the Wilcoxon floor): warn once per text.
    for message in dict.fromkeys(caught):
        warnings.warn(message, stacklevel=2)
    if trials.arms:
        written, blocks = write_arms(trials, out)
        files += written
        doc.add(*blocks)
    if len(fusion_arms(trials)[0]) > 2:
        written, blocks = write_many_arms(trials, options, out)
        files += written
        doc.add(*blocks)
    if client is not None and trials.values == C.DEFAULT_VALUES and trials.arms:
        for section in (write_optimism, write_robustness):
            written, blocks = section(client, trials, options, out)
            files += written
            doc.add(*blocks)
    doc.add(*agreement)
    if built:
        repeated = len(set(trials.runs[C.SEED])) > 1
        notes = [*footnotes(options.extended, options.rope, repeated, values=trials.values,
                            sizes_logged=sizes_logged), *notes]
    elif trials.values != C.DEFAULT_VALUES:
        notes = [{"best": BEST_VALUES_NOTE, "oracle": ORACLE_VALUES_NOTE}[trials.values], *notes]
    if notes:
        doc.add(Notes(list(dict.fromkeys(notes))))
    text, pages = write_document(doc, out, "report")
    files += pages
    if options.echo:
        print(text)
    if options.log_to_mlflow:
        log_files(client, trials, files, artifact_dir(REPORT_ARTIFACT_DIR, trials.values))
    print(f"wrote {len(files)} files to {out} (open report.html in a browser)", file=sys.stderr)
    return text


def compare_report(contrast: Contrast, options: ReportOptions | str | None = None, /, **changes) -> str:
    """One fold-paired comparison (``python -m analysis compare``): printed, saved, logged under ``compare/``.

    ``contrast``'s factor and fixed factors are any tag or param of the runs (any column of
    ``values_csv``); the runs and the rest as in :func:`sweep_report`. Writes ``<slug>.md`` (the printed
    text), ``<slug>.html`` (self-contained), ``<slug>.csv``, ``<slug>.tex`` and ``<slug>.png``.
    """
    options = ReportOptions.of(options, **changes)
    client, trials = load(options, factors=[contrast.factor, *contrast.where])
    res = compare_table(trials, contrast, options)
    out = Path(options.out_dir) if options.out_dir is not None else default_out(trials, COMPARE_ARTIFACT_DIR)
    out.mkdir(parents=True, exist_ok=True)
    files, blocks = write_table(res, out)
    notes = [*footnotes(options.extended, options.rope, repeated=res.comparison.runs > 1, values=trials.values,
                        sizes_logged=res.comparison.sizes_logged),
             *trials.notes, *res.notes]
    doc = Document(title=res.comparison.label, blocks=[*blocks, Notes(list(dict.fromkeys(notes)))])
    # The .md file holds the full printed text, footnotes included.
    text, pages = write_document(doc, out, res.comparison.slug)
    files.append(pages[1])
    if options.echo:
        print(text)
    if options.log_to_mlflow:
        log_files(client, trials, files, artifact_dir(COMPARE_ARTIFACT_DIR, trials.values))
    print(f"wrote {len(files)} files to {out}", file=sys.stderr)
    return text
