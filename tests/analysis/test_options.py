"""What a report is asked for: options with checked values, and the comparison's names."""

from __future__ import annotations

import pytest

from analysis.options import DEFAULT_METRICS, METRIC_ORDER, NOT_IN_PAPER, Contrast, ReportOptions
from erc import vocab


def test_options_from_an_experiment_name_and_changes():
    opts = ReportOptions.of("mine", sweep="demo", metrics=["acc"])
    assert (opts.experiment, opts.sweep, opts.metrics) == ("mine", "demo", ("acc",))
    assert ReportOptions.of(opts, echo=False) == ReportOptions(experiment="mine", sweep="demo", metrics=("acc",),
                                                               echo=False)
    assert ReportOptions.of() == ReportOptions() and ReportOptions().experiment == vocab.EXPERIMENT
    with pytest.raises(TypeError, match="colour"):
        ReportOptions.of("mine", colour="red")


@pytest.mark.parametrize(("change", "message"), [
    ({"values": "max"}, "values must be one of selected, oracle, best"),
    ({"alternative": "up"}, "alternative must be one of"),
    ({"sweep": "s", "all_runs": True}, "either a sweep or all runs"),
])
def test_options_refuse_what_no_report_can_do(change, message):
    with pytest.raises(ValueError, match=message):
        ReportOptions(**change)


def test_values_csv_clashes_only_with_run_selection():
    assert ReportOptions(sweep="s").clashes_with_values_csv() == []
    clash = ReportOptions(values_csv="f.csv", sweep="s", filter_string="x", values="best", rope=0.1)
    assert clash.clashes_with_values_csv() == ["sweep", "filter_string", "values"]


def test_contrast_label_and_file_name():
    c = Contrast(factor="fusion", treatment="outer", baseline="concat", where={"labels": "peakl", "lr": 0.001})
    assert c.label == "fusion: outer vs concat (labels=peakl, lr=0.001)"
    assert c.slug == "fusion_outer_vs_concat_labels-peakl_lr-0.001"
    assert Contrast(factor="opt", treatment="a b", baseline="c/d").slug == "opt_a-b_vs_c-d"
    with pytest.raises(ValueError, match="cannot also be fixed"):
        Contrast(factor="fusion", treatment="outer", baseline="concat", where={"fusion": "x"})


def test_metric_order_holds_every_known_metric_once_and_defaults_are_the_papers():
    assert sorted(METRIC_ORDER) == sorted({*vocab.METRIC_KEYS, *vocab.LOSS_KEYS})
    assert set(NOT_IN_PAPER) <= set(vocab.METRIC_KEYS)  # a renamed metric must not slip into the defaults
    assert DEFAULT_METRICS == ("acc", "macro_f1", "micro_f1", "ccc_arousal", "ccc_valence")  # the paper's columns
