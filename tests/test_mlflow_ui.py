"""What a researcher sees after a sweep: its console output, and the MLflow UI in a real browser.

A tiny real sweep (one trial fails once and is retried) runs as the main job runs, with stdout not a
terminal, and writes its SQLite store; its console output is checked as a log reader sees it.
``mlflow server`` serves that store; Playwright drives Debian's Chromium through the clicks a user
makes: switch MLflow 3's UI from "GenAI" to "Model training", expand the sweep's parent run, tick two
child runs, press Compare; open the parent run's ``report/report.html`` in MLflow's artifact viewer.
Screenshots are kept under the test's tmp dir; with ``ERC_UPDATE_SCREENSHOTS=1`` they also replace
``docs/mlflow_compare.png`` and ``docs/report_html.png`` (the README's pictures), so ordinary test runs
leave the work tree alone.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from analysis.plots import arm_plot, peakl_figure
from erc import contract as C
from tests.sweep_helpers import REPO, MlflowServer, children, parents, run, sweep_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOT = REPO / "docs" / "mlflow_compare.png"
DOCS_REPORT_SCREENSHOT = REPO / "docs" / "report_html.png"
COMPARED = ("fold0-concat-peakl", "fold0-outer-peakl")
FAILS_ONCE = "fold1-concat-peakl"
PAPER_HEADER = "| metric | T | dof | alternative | p-val | CI95% | cohen-d | BF10 | power |"
UI_TIMEOUT = 60_000  # ms; generous: CI machines run other tests beside this one

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} not found: install Debian's chromium and chromium-driver (.ci/run does) to run "
           "the MLflow UI browser test",
)


class StoreServer(MlflowServer):
    """``mlflow server`` on 127.0.0.1 over an existing SQLite store, as a user runs it after a sweep.

    The runs' artifact URIs are the absolute local paths the sweep wrote (under the experiment's
    artifact_location); without artifact proxying the server reads them in place. New experiments
    made through this server would land beside them (``--default-artifact-root``).
    """

    def __init__(self, db: Path, artifact_root: Path, log: Path) -> None:
        super().__init__(log.parent / "server", ["--backend-store-uri", f"sqlite:///{db}", "--default-artifact-root",
                                                 artifact_root.as_uri(), "--no-serve-artifacts"])


@pytest.fixture(scope="module")
def finished_sweep(demo_root, demo_encoders, tmp_path_factory):
    """A finished 4-trial sweep (folds 0-1 × concat/outer × peakl, 2 epochs, one retried failure) in SQLite."""
    work = tmp_path_factory.mktemp("ui_sweep")
    cache = work / "cache"
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                        "concat,outer", "--labels", "peakl", "--epochs", "2", "--preset", "demo")
    # A fresh local Ray instance: on a shared machine ray.init() would otherwise join a `ray start` cluster.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ADDRESS", "local")
        proc = run(cmd, cwd=work, env={"ERC_FAIL_ONCE": FAILS_ONCE})
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = cache / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    [parent] = parents(client)
    exp = client.get_experiment_by_name("erc-sweeps")
    location = Path(exp.artifact_location.removeprefix("file://"))
    return {"work": work, "db": db, "client": client, "parent": parent, "experiment": exp,
            "artifact_root": location.parent, "proc": proc, "cache": cache}


@pytest.fixture(scope="module")
def server(finished_sweep):
    srv = StoreServer(finished_sweep["db"], finished_sweep["artifact_root"], finished_sweep["work"] / "server.log")
    yield srv
    srv.stop()


@pytest.mark.slow
def test_console_output_is_a_readable_log(finished_sweep):
    """Stdout not a terminal (a log, CI): plain lines, one per trial, no traceback, the paper's table first."""
    proc = finished_sweep["proc"]
    out, err = proc.stdout, proc.stderr
    assert "\r" not in out and "\r" not in err  # no redrawn progress bars (Tune's, tqdm's, Hugging Face's)
    assert "Traceback" not in out + err  # the retried failure is one line; its traceback is in MLflow
    trials = [re.fullmatch(r"\[(\d)/4\]  (fold \d  \w+-peakl)  acc 0\.\d{3}  macro-F1 0\.\d{3}  \d+ s", line)
              for line in out.splitlines() if line.startswith("[")]
    assert all(trials) and sorted(m.group(1) for m in trials) == ["1", "2", "3", "4"]
    assert sorted(m.group(2) for m in trials) == sorted(f"fold {f}  {fusion}-peakl" for fusion in ("concat", "outer")
                                                        for f in (0, 1))
    assert sum("fold 1  concat-peakl  attempt 1 failed, retrying: " in line for line in out.splitlines()) == 1
    for chatter in ("Token authentication is enabled", "View detailed results here", "tensorboard",
                    "Trial status:", "Checkpoint successfully created", "Creating initial MLflow database",
                    "You are trying to log an invalid value"):
        assert chatter not in out + err, chatter
    assert max(len(line) for line in (out + err).splitlines()) < 1000  # no result dumped on one line
    # Tune's own files: a batched result's earlier epochs are in result.json, not a progress.csv column;
    # no TensorBoard event files (MLflow has every metric)
    [state] = (finished_sweep["cache"] / "ray_results").glob("*/experiment_state-*.json")
    trials = [p for p in state.parent.iterdir() if (p / "progress.csv").is_file()]
    assert len(trials) == 4
    for trial in trials:
        assert C.RESULT_EARLIER_EPOCHS not in (trial / "progress.csv").read_text().splitlines()[0]
        final = json.loads((trial / "result.json").read_text().splitlines()[-1])
        assert [e[C.RESULT_EPOCH] for e in final[C.RESULT_EARLIER_EPOCHS]] == [2]
        assert not list(trial.glob("events.out.tfevents*"))
    # The header says where the runs go; Tune's own output is kept in a log beside the report.
    assert re.search(rf"^  runs +MLflow sqlite:///{re.escape(str(finished_sweep['db']))},", out, re.MULTILINE)
    tune_log = re.search(r"^  tune log +(\S+) ", out, re.MULTILINE).group(1)
    assert "View detailed results here" in Path(tune_log).read_text()
    # The report: the seed's 8 columns are the first table; the label tables need arms this sweep lacks.
    tables = [line for line in out.splitlines() if line.startswith("| metric |")]
    assert tables[0] == PAPER_HEADER and tables[1].startswith("| metric | T (NB) |")
    assert "In words: outer-peakl − concat-peakl, mean difference" in out
    assert "Table skipped: no finished grid trials with labels=soft" in out
    # header, one line per trial, then the report: tables, per-arm, optimism, robustness, agreement, notes
    assert len(out.splitlines()) < 130


@pytest.mark.slow
def test_parent_run_serves_the_report_figures(finished_sweep, server):
    """The parent run's figures (PeakL labels, per-arm fold values, t-test tables) are readable via the server."""
    parent = finished_sweep["parent"].info.run_id
    listing = requests.get(f"{server.uri}/ajax-api/2.0/mlflow/artifacts/list",
                           params={"run_id": parent, "path": "report"}, timeout=30).json()
    names = {f["path"] for f in listing["files"]}
    assert {"report/report.md", "report/report.html", "report/arms_acc.png", "report/arms_macro_f1.png",
            "report/fusion_outer_vs_concat_labels-peakl.png"} <= names
    for path in ("plots/peakl_labels.png", "report/arms_acc.png"):
        res = requests.get(f"{server.uri}/get-artifact", params={"path": path, "run_uuid": parent}, timeout=30)
        assert res.ok, path
        drawn_png(res.content)
    report = requests.get(f"{server.uri}/get-artifact", params={"path": "report/report.md", "run_uuid": parent},
                          timeout=30).text
    assert "`arms_acc.png`" in report and "## fusion: outer vs concat (labels=peakl)" in report
    assert PAPER_HEADER in report


@pytest.mark.slow
@needs_chromium
def test_compare_two_child_runs_in_the_browser(finished_sweep, server, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    client, exp = finished_sweep["client"], finished_sweep["experiment"]
    sweep = finished_sweep["parent"].data.tags["sweep"]
    runs = {r.info.run_name: r for r in children(client)}
    assert set(COMPARED) <= set(runs)
    shot = tmp_path / "mlflow_compare.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = None
        try:
            page = _open_training_view(browser, server, exp, height=1800)
            close_assistant = page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]')
            try:  # the assistant side panel opens by itself on a first visit; close it to see the table
                close_assistant.click(timeout=5_000)
            except PlaywrightTimeout:
                pass

            # The sweep is one parent run; expand it to list its trials.
            parent_row = page.get_by_role("row").filter(has_text=sweep)
            parent_row.locator('[data-component-id*="runnamecellrenderer"]').first.click()
            for name in COMPARED:
                row = page.get_by_role("row").filter(has_text=name)
                expect(row).to_have_count(1, timeout=UI_TIMEOUT)
                row.get_by_role("checkbox").first.check()
            page.get_by_role("button", name="Compare", exact=True).click()

            expect(page).to_have_url(re.compile(r"#/compare-runs\?runs="), timeout=UI_TIMEOUT)
            expect(page.get_by_text("Comparing 2 Runs from 1 Experiment")).to_be_visible(timeout=UI_TIMEOUT)
            for name in COMPARED:
                assert runs[name].info.run_id in page.url
            # the metric table lists best/* first; selected/* is further down its scrolled box
            metric = page.get_by_text("best/acc", exact=True).first
            expect(metric).to_be_visible(timeout=UI_TIMEOUT)
            # Only the parameters the two runs differ in (fusion) matter here.
            page.get_by_text("Show diff only").first.click()
            body = page.inner_text("body") + "\n" + _scrolled_metric_rows(page)
            for name in COMPARED:
                assert name in body
            for key in ("selected/acc", "selected/macro_f1", "selected/ccc_valence", "valid/acc"):
                assert key in body, key
            for name in COMPARED:  # the values shown are the runs' selected-epoch metrics (3 decimals)
                acc = runs[name].data.metrics["selected/acc"]
                assert f"{round(acc, 3):g}" in body, (name, acc)
            # the parallel-coordinates plot (fusion vs a metric) draws last
            expect(page.locator(".js-plotly-plot .parcoords").first).to_be_visible(timeout=UI_TIMEOUT)
            page.wait_for_timeout(500)
            page.screenshot(path=str(shot))
        except Exception:
            if page is not None:  # what the browser showed when it went wrong
                page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"failure screenshot: {tmp_path / 'failure.png'}; page text:\n{page.inner_text('body')[:3000]}")
            raise
        finally:
            browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")
    if os.environ.get("ERC_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
        print(f"updated {DOCS_SCREENSHOT}")


@pytest.mark.slow
@needs_chromium
def test_report_html_renders_in_the_artifact_viewer(finished_sweep, server, tmp_path):
    """The parent run's report.html, opened in MLflow's artifact viewer: tables and inline figures render."""
    from playwright.sync_api import expect, sync_playwright

    exp, parent = finished_sweep["experiment"], finished_sweep["parent"]
    shot = tmp_path / "report_html.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = None
        try:
            page = _open_training_view(browser, server, exp, height=1600)
            page.goto(f"{server.uri}/#/experiments/{exp.experiment_id}/runs/{parent.info.run_id}"
                      "/artifacts/report/report.html")
            _close_assistant(page)
            report = page.frame_locator("iframe").first  # MLflow shows an HTML artifact in a frame
            expect(report.locator("h1")).to_have_text(f"Sweep {parent.data.tags['sweep']}", timeout=UI_TIMEOUT)
            first = report.locator("table").first
            assert first.locator("thead th").all_inner_texts() == PAPER_HEADER.strip("| ").split(" | ")
            expect(report.get_by_text("In words: outer-peakl − concat-peakl")).to_be_visible()
            assert report.locator("table").count() >= 3  # paper's, corrections, per-arm
            frame = next(f for f in page.frames if f.url.startswith("blob:"))
            widths = frame.evaluate("() => [...document.images].map(i => i.complete ? i.naturalWidth : -1)")
            # every figure report.md names (the fold-paired one, per-arm and robustness ones per reader
            # metric), all decoded from inline data
            md = (finished_sweep["cache"] / "reports" / parent.data.tags["sweep"] / "report.md").read_text()
            figures = re.findall(r"`([^`]+\.png)`", md)
            assert len(figures) >= 1 + 6 and len(widths) == len(figures) and all(w > 0 for w in widths), widths
            assert frame.evaluate("() => [...document.images].every(i => i.src.startsWith('data:image/png'))")
            page.screenshot(path=str(shot))
        except Exception:
            if page is not None:
                page.screenshot(path=str(tmp_path / "failure.png"))
                print(f"failure screenshot: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
    if os.environ.get("ERC_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, DOCS_REPORT_SCREENSHOT)
        print(f"updated {DOCS_REPORT_SCREENSHOT}")


# The compare view's metric table is a react-virtualized grid: a 300 px box that renders only the rows
# in view (MLflow 3.17), so the page text lacks most metrics until the box is scrolled through.
_SCROLL_BOX = """() => {
  const cell = [...document.querySelectorAll('body *')].find(e => e.textContent.trim() === 'best/acc');
  return cell ? cell.closest('.ReactVirtualized__Grid') : null;
}"""


def _scrolled_metric_rows(page) -> str:
    """The page's text at every scroll position of the compare view's metric table (names and values)."""
    box = page.evaluate_handle(_SCROLL_BOX).as_element()
    if box is None:  # everything fits: nothing is hidden
        return ""
    seen, last = [], -1
    while True:
        seen.append(page.inner_text("body"))
        top = box.evaluate("b => { b.scrollTop += b.clientHeight / 2; return b.scrollTop; }")
        if top == last:
            return "\n".join(seen)
        last = top
        page.wait_for_timeout(150)


def _open_training_view(browser, server, exp, *, height: int):
    """A page on the experiment in MLflow 3's "Model training" view, as a user gets there."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1440, "height": height})
    page.set_default_timeout(UI_TIMEOUT)
    # MLflow 3 shows one-off guidance popovers ("Detect Issues … Got it") that cover the page;
    # dismiss them whenever they show up, as a user would.
    got_it = page.get_by_role("button", name="Got it")
    page.add_locator_handler(got_it, lambda: got_it.click())
    page.goto(f"{server.uri}/#/experiments/{exp.experiment_id}")
    # The UI opens in "GenAI" mode (traces, judges, …); a sweep's runs live in "Model training".
    page.get_by_role("button", name="Model training", exact=True).click()
    expect(page).to_have_url(re.compile(r"workflowType=machine_learning"), timeout=UI_TIMEOUT)
    return page


def _close_assistant(page) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:  # the assistant side panel opens by itself on a first visit; close it to see the page
        page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]').click(timeout=5_000)
    except PlaywrightTimeout:
        pass


def drawn_png(data: bytes) -> tuple[int, int]:
    """(height, width) in pixels of a PNG that holds a drawing: decoded, RGB(A), not one flat colour."""
    pixels = mpimg.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4), pixels.shape
    assert pixels[..., :3].std() > 0.05, "the image is blank"
    return pixels.shape[:2]


def test_peakl_and_arm_figures_are_drawn_pngs(tmp_path):
    votes = np.array([[0, 0, 0, 10, 0, 0, 0], [4, 1, 1, 2, 0, 1, 1], [0, 1, 0, 1, 0, 7, 1], [2, 1, 0, 1, 6, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0]])
    png = peakl_figure(votes, tmp_path / "sub" / "peakl.png")
    # 100 dpi: 7.2 in high, 3 in per example (4 ambiguous vote vectors here) and at least 9 in wide
    assert drawn_png(png.read_bytes()) == (720, 1200)
    # only one-hot labels: nothing to show as examples, the histograms still are drawn
    assert drawn_png(peakl_figure(np.eye(7, dtype=int)[[0, 3, 3]] * 10, tmp_path / "onehot.png").read_bytes()) == (
        720, 900)
    with pytest.raises(ValueError, match="votes must be"):
        peakl_figure(np.ones((3, 5)), tmp_path / "bad.png")
    values = {"concat-peakl": {0: 0.5, 1: 0.55, 2: 0.4}, "outer-peakl": {0: 0.6, 1: 0.5}}  # fold 2 missing
    assert drawn_png(arm_plot(values, tmp_path / "arms_acc.png", "acc").read_bytes()) == (360, 480)
