"""What a researcher sees in the MLflow UI after a sweep, checked in a real browser (headless Chromium).

A tiny real sweep writes its SQLite store; ``mlflow server`` serves that store; Playwright drives
Debian's Chromium through the clicks a user makes: switch MLflow 3's UI from "GenAI" to "Model
training", expand the sweep's parent run, tick two child runs, press Compare. The screenshot is kept
under the test's tmp dir; with ``ERC_UPDATE_SCREENSHOTS=1`` it also replaces ``docs/mlflow_compare.png``
(the README's picture), so ordinary test runs leave the work tree alone.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow.tracking import MlflowClient

from analysis.plots import arm_plot, peakl_figure
from tests.sweep_helpers import REPO, MlflowServer, children, parents, run, sweep_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS_SCREENSHOT = REPO / "docs" / "mlflow_compare.png"
COMPARED = ("fold0-concat-peakl", "fold0-outer-peakl")
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
    """A finished 4-trial sweep (folds 0-1 × concat/outer × peakl, 2 epochs) in a SQLite store."""
    work = tmp_path_factory.mktemp("ui_sweep")
    cache = work / "cache"
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                        "concat,outer", "--labels", "peakl", "--epochs", "2", "--preset", "demo")
    # A fresh local Ray instance: on a shared machine ray.init() would otherwise join a `ray start` cluster.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ADDRESS", "local")
        proc = run(cmd, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    db = cache / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    [parent] = parents(client)
    exp = client.get_experiment_by_name("erc-sweeps")
    location = Path(exp.artifact_location.removeprefix("file://"))
    return {"work": work, "db": db, "client": client, "parent": parent, "experiment": exp,
            "artifact_root": location.parent}


@pytest.fixture(scope="module")
def server(finished_sweep):
    srv = StoreServer(finished_sweep["db"], finished_sweep["artifact_root"], finished_sweep["work"] / "server.log")
    yield srv
    srv.stop()


@pytest.mark.slow
def test_parent_run_serves_the_report_figures(finished_sweep, server):
    """The parent run's figures (PeakL labels, per-arm fold values, t-test tables) are readable via the server."""
    parent = finished_sweep["parent"].info.run_id
    listing = requests.get(f"{server.uri}/ajax-api/2.0/mlflow/artifacts/list",
                           params={"run_id": parent, "path": "report"}, timeout=30).json()
    names = {f["path"] for f in listing["files"]}
    assert {"report/report.md", "report/arms_acc.png", "report/arms_macro_f1.png",
            "report/fusion_outer_vs_concat_labels-peakl.png"} <= names
    for path in ("plots/peakl_labels.png", "report/arms_acc.png"):
        res = requests.get(f"{server.uri}/get-artifact", params={"path": path, "run_uuid": parent}, timeout=30)
        assert res.ok and res.content[:8] == b"\x89PNG\r\n\x1a\n", path
    report = requests.get(f"{server.uri}/get-artifact", params={"path": "report/report.md", "run_uuid": parent},
                          timeout=30).text
    assert "`arms_acc.png`" in report and "## fusion: outer vs concat (labels=peakl)" in report


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
            page = browser.new_page(viewport={"width": 1440, "height": 1800})
            page.set_default_timeout(UI_TIMEOUT)
            # MLflow 3 shows one-off guidance popovers ("Detect Issues … Got it") that cover the page;
            # dismiss them whenever they show up, as a user would.
            got_it = page.get_by_role("button", name="Got it")
            page.add_locator_handler(got_it, lambda: got_it.click())

            page.goto(f"{server.uri}/#/experiments/{exp.experiment_id}")
            # The UI opens in "GenAI" mode (traces, judges, …); a sweep's runs live in "Model training".
            page.get_by_role("button", name="Model training", exact=True).click()
            expect(page).to_have_url(re.compile(r"workflowType=machine_learning"), timeout=UI_TIMEOUT)
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
            metric = page.get_by_text("selected/acc", exact=True).first
            expect(metric).to_be_visible(timeout=UI_TIMEOUT)
            # Only the parameters the two runs differ in (fusion) matter here.
            page.get_by_text("Show diff only").first.click()
            body = page.inner_text("body")
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


def test_peakl_and_arm_figures_are_pngs(tmp_path):
    votes = np.array([[0, 0, 0, 10, 0, 0, 0], [4, 1, 1, 2, 0, 1, 1], [0, 1, 0, 1, 0, 7, 1], [2, 1, 0, 1, 6, 0, 0],
                      [0, 0, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0]])
    png = peakl_figure(votes, tmp_path / "sub" / "peakl.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # only one-hot labels: nothing to show as examples, the histograms still are drawn
    assert peakl_figure(np.eye(7, dtype=int)[[0, 3, 3]] * 10, tmp_path / "onehot.png").exists()
    with pytest.raises(ValueError, match="votes must be"):
        peakl_figure(np.ones((3, 5)), tmp_path / "bad.png")
    values = {"concat-peakl": {0: 0.5, 1: 0.55, 2: 0.4}, "outer-peakl": {0: 0.6, 1: 0.5}}  # fold 2 missing
    assert arm_plot(values, tmp_path / "arms_acc.png", "acc").read_bytes()[:4] == b"\x89PNG"
