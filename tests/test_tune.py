"""minidl.cli.tune and `minidl-run tune`: choices made on a validation split of the training
points, never the test set; Table I's rows from minidl.cli.sweep; model specs, data files."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import Result

import minidl
from minidl.cli import TrainConfig, run
from minidl.cli import output as cli_output
from minidl.cli import tune as tuning
from minidl.cli.candidates import INITS
from minidl.cli.experiment import load_data
from minidl.cli.sweep import TABLE_I, Row, table_i_row
from minidl.cli.tune import (
    Budget,
    _epoch_free,
    candidate_factory,
    candidate_grid,
    count_runs,
    default_candidates,
    search,
    tune,
    tune_rows,
    tune_table,
)
from minidl.plugins.datasets import disc

TINY = TrainConfig(hidden=[6, 6], n_train=120, n_test=60, batch_size=40, optimizer="sgd")
TINY_BUDGET = Budget(epochs=(3, 6), seeds=(1000, 1001), finalists=2, confirm_seeds=(1002,))
MLP = "linear(6), tanh, linear(1), sigmoid"


def test_validation_split_is_carved_from_training_points() -> None:
    config = TrainConfig(n_train=100, n_test=50, seed=4)
    train, _, test = load_data(config)
    fit_part, val, same_test = load_data(config.replace(validation=0.2))
    assert torch.equal(same_test.x, test.x)
    assert (len(fit_part), len(val)) == (80, 20)
    rows = {tuple(r) for r in train.x.tolist()}
    assert all(tuple(r) in rows for r in fit_part.x.tolist() + val.x.tolist())
    assert not {tuple(r) for r in fit_part.x.tolist()} & {tuple(r) for r in val.x.tolist()}
    assert not rows & {tuple(r) for r in test.x.tolist()}
    with pytest.raises(ValueError, match="validation must be a fraction"):
        load_data(config.replace(validation=1.5))


def write_csv(path: Path, data: minidl.Dataset) -> str:
    rows = torch.cat([data.x, data.y], 1).tolist()
    path.write_text("x,y,label\n" + "".join(f"{a},{b},{int(c)}\n" for a, b, c in rows))
    return str(path)


def test_search_never_reads_the_test_set(tmp_path: Path) -> None:
    # The test file does not exist: the whole search must run without it, and only the
    # test rounds may then fail for want of it.
    train = write_csv(tmp_path / "train.csv", disc(150, torch.Generator().manual_seed(0)))
    base = TINY.replace(data=train, test_data=str(tmp_path / "missing.csv"))
    candidates = candidate_grid(lr=[0.3, 1.0], epochs=[3, 6])
    trials = search(base, candidates, seeds=(1, 2))
    assert len(trials) == 4 and all(len(t.accuracies) == 2 for t in trials)
    with pytest.raises(minidl.DataError, match="missing.csv: no such file"):
        tune(base, candidates, budget=TINY_BUDGET, rounds=1)


def test_test_set_changes_nothing_before_the_rounds(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    train = write_csv(tmp_path / "train.csv", disc(150, generator))
    test = disc(80, generator)
    honest = write_csv(tmp_path / "test.csv", test)
    flipped = write_csv(tmp_path / "flipped.csv", minidl.Dataset(test.x, 1 - test.y))
    candidates = candidate_grid(lr=[0.3, 1.0], epochs=[3, 6])
    a = tune(TINY.replace(data=train, test_data=honest), candidates, budget=TINY_BUDGET, rounds=1)
    b = tune(TINY.replace(data=train, test_data=flipped), candidates, budget=TINY_BUDGET, rounds=1)
    assert [(t.settings, t.accuracies) for t in a.trials] == [
        (t.settings, t.accuracies) for t in b.trials
    ]
    # The rounds do score the test set: flipped labels flip the accuracy.
    assert a.accuracies[0] == pytest.approx(1 - b.accuracies[0])


def test_shared_epoch_runs_equal_separate_runs() -> None:
    # A constant schedule scores epochs 3 and 6 from one 6-epoch run; cosine needs two runs.
    for schedule in ("constant", "cosine"):
        candidates = candidate_grid(lr=[0.5], epochs=[3, 6], schedule=[schedule])
        trials = search(TINY, candidates, seeds=(7,))
        for t in trials:
            config = TINY.replace(**t.settings, seed=7, validation=0.2)
            assert t.accuracies == [run(config).final["val_accuracy"]]


def test_epoch_free_schedules() -> None:
    config = TrainConfig(lr=0.1)
    assert _epoch_free(config.replace(schedule="constant"), [10, 50])
    assert _epoch_free(config.replace(schedule="step"), [10, 50])
    assert _epoch_free(config.replace(schedule="step(step_size=5, gamma=0.5)"), [10, 50])
    assert not _epoch_free(config.replace(schedule="cosine"), [10, 50])


def test_trials_are_ranked_by_mean_validation_accuracy() -> None:
    trials = search(TINY, candidate_grid(lr=[0.01, 0.3, 1.0], epochs=[2, 6]), seeds=(1, 2))
    means = [t.mean for t in trials]
    assert means == sorted(means, reverse=True)
    assert all(t.seeds == [1, 2] for t in trials)


def test_tune_reports_rounds_that_rerun_reproduces() -> None:
    ticks: list[int] = []
    candidates = candidate_grid(lr=[0.3, 1.0], epochs=[3, 6], schedule=["constant", "cosine"])
    result = tune(TINY, candidates, budget=TINY_BUDGET, rounds=2, progress=ticks.append)
    assert sum(ticks) == count_runs(TINY, candidates, TINY_BUDGET, 2)
    assert result.chosen == result.trials[0].settings
    # The finalists were confirmed on more seeds, and the best of them was chosen.
    finalists = result.trials[: TINY_BUDGET.finalists]
    assert all(t.seeds == [1000, 1001, 1002] for t in finalists)
    assert result.validation.mean == max(t.mean for t in finalists)
    # Re-running the chosen settings as a plain training run gives the reported accuracy.
    for seed, accuracy in enumerate(result.accuracies):
        rerun = run(TINY.replace(**result.chosen, seed=seed))
        assert rerun.test_accuracy == accuracy
    assert result.mean == pytest.approx(sum(result.accuracies) / 2)
    # A row of a sweep table: label, the chosen lr, the report's numbers for relu-sgd.
    record = result.as_dict()
    assert (record["label"], record["lr"]) == ("relu-sgd", result.chosen["lr"])
    assert record["report_mean"] == TABLE_I[0].report_mean


def test_diverged_candidates_rank_last() -> None:
    # Without the output sigmoid, a huge step sends the squared error to infinity.
    base = TINY.replace(model="linear(6), relu, linear(1)")
    trials = search(base, candidate_grid(lr=[0.3, 1e6], epochs=[4]), seeds=(1,))
    assert trials[-1].settings["lr"] == 1e6 and trials[-1].diverged
    assert math.isinf(trials[-1].std) and trials[-1].mean == 0.0


def test_round_seeds_must_be_fresh() -> None:
    with pytest.raises(ValueError, match=r"round seeds must be fresh, but \[1000, 1001\]"):
        tune(TINY.replace(seed=995), candidate_grid(lr=[0.1]), budget=TINY_BUDGET, rounds=7)
    with pytest.raises(ValueError, match="round seeds must be fresh"):  # before any training
        tune_table(base=TINY.replace(seed=1002), budget=TINY_BUDGET, rounds=1)


def test_only_tunable_settings() -> None:
    with pytest.raises(ValueError, match="cannot tune 'hidden'; tunable settings: standardize"):
        candidate_grid(hidden=[[5]])
    with pytest.raises(ValueError, match="cannot tune 'optimizer'"):
        search(TINY, [{"optimizer": "adam"}])
    with pytest.raises(ValueError, match="no values to try for 'lr'"):
        candidate_grid(lr=[])


def test_default_candidates_cover_the_research_grid() -> None:
    candidates = default_candidates("sigmoid", "sgd")
    assert {(c["init"], c["gain"]) for c in candidates} == {("xavier", 2.0), ("xavier", 4.0)}
    assert all(c["standardize"] for c in candidates)
    assert {c["schedule"] for c in candidates} == {"cosine"}
    assert len(candidates) == 2 * 3 * 3  # inits x learning rates x epoch counts
    wider = default_candidates("relu", "adam", schedules=("constant", "cosine"), lrs=[0.1])
    assert {(c["schedule"], c["lr"]) for c in wider} == {("constant", 0.1), ("cosine", 0.1)}
    # An optimizer spec takes its optimizer's rates; a model (no activation) the plain inits.
    spec = default_candidates(None, "adam(eps=1e-6)")
    assert {c["lr"] for c in spec} == {1e-3, 3e-3, 1e-2}
    assert {(c["init"], c["gain"]) for c in spec} == {("default", None), ("xavier", None)}


def test_candidate_factory_replaces_axes() -> None:
    factory = candidate_factory(TINY_BUDGET, lrs=[0.5], gains=[2.0], standardize=[True, False])
    candidates = factory(TrainConfig(activation="tanh", optimizer="sgd"))
    assert {c["epochs"] for c in candidates} == {3, 6}  # the budget's
    assert {(c["init"], c["gain"]) for c in candidates} == {("default", 2.0), ("xavier", 2.0)}
    assert {c["standardize"] for c in candidates} == {True, False}
    assert len(candidates) == 2 * 2 * 2


def test_rows_are_table_i_pairs_from_the_sweep_module() -> None:
    assert not hasattr(tuning, "TABLE_ONE")  # Table I is defined once, in minidl.cli.rows
    rows = tune_rows()
    assert [(r.activation, r.optimizer) for r in rows] == [
        (r.activation, r.optimizer) for r in TABLE_I
    ]
    # The report's numbers stay; its learning rates and betas are what tuning replaces.
    assert [r.report_mean for r in rows] == [r.report_mean for r in TABLE_I]
    assert all(set(r.changes) == {"activation", "optimizer"} for r in rows)
    assert [(r.label, r.report_mean) for r in tune_rows(["tanh"], ["adam(eps=1e-6)", "adam"])] == [
        ("tanh-adam(eps=1e-6)", None),
        ("tanh-adam", TABLE_I[5].report_mean),
    ]
    assert tune_rows(optimizers=["sgd"], model=True) == [Row({"optimizer": "sgd"})]
    with pytest.raises(ValueError, match="a model spec has its own activations"):
        tune_rows(["relu"], model=True)


def test_tune_table_with_a_model_spec_equals_tune() -> None:
    base = TINY.replace(model=MLP)
    candidates = candidate_factory(TINY_BUDGET, lrs=[0.3, 1.0])
    [result] = tune_table(tune_rows(optimizers=["sgd"], model=True), base, candidates=candidates, budget=TINY_BUDGET, rounds=2)  # fmt: skip
    alone = tune(base, candidates(base), budget=TINY_BUDGET, rounds=2)
    assert (result.chosen, result.accuracies) == (alone.chosen, alone.accuracies)
    record = result.as_dict()
    assert (record["label"], record["activation"], record["report_mean"]) == ("sgd", None, None)
    assert result.config.model == MLP


# --- minidl-run tune -----------------------------------------------------------------

# One candidate per row, tiny data: the search still runs all three stages.
TINY_CLI = ["--budget", "quick", "--epochs", "2,4", "--lr", "0.3", "--n-train", "80"]
TINY_CLI += ["--n-test", "40", "--rounds", "2"]


def test_cli_json_rows_are_sweep_rows_plus_settings(invoke: Callable[..., Result]) -> None:
    document = json.loads(invoke("tune", *TINY_CLI, "--json").stdout)
    rows = document["rows"]
    pairs = [(r.activation, r.optimizer) for r in TABLE_I]
    assert [(r["activation"], r["optimizer"]) for r in rows] == pairs
    sweep_row = json.loads(
        invoke(
            "sweep", "--rounds", "1", "--epochs", "1", "--n-train", "20", "--n-test", "10",
            "--activation", "relu", "--optimizer", "sgd", "--json",
        ).stdout
    )["rows"][0]  # fmt: skip
    for r, (activation, optimizer) in zip(rows, pairs, strict=True):
        assert set(sweep_row) <= set(r)
        assert len(r["accuracies"]) == r["rounds"] == 2
        assert r["mean"] == pytest.approx(statistics.mean(r["accuracies"]))
        assert r["std"] == pytest.approx(statistics.stdev(r["accuracies"]))
        assert r["lr"] == r["settings"]["lr"] == 0.3
        assert r["settings"]["epochs"] in (2, 4) and r["settings"]["standardize"] is True
        assert (r["settings"]["init"], r["settings"]["gain"]) in INITS[activation]
        assert len(r["validation"]["accuracies"]) == 4  # 2 tuning seeds + 2 confirming
        assert r["report_mean"] == table_i_row(activation, optimizer).report_mean
    assert (document["budget"], document["validation"], document["rounds"]) == ("quick", 0.2, 2)
    assert (
        document["notes"][0]
        == "2 rounds per row (the report's had 10): the mean and std are rougher"
    )
    assert not any("epochs" in note for note in document["notes"])  # tuning chose them


def test_cli_chosen_settings_rerun_through_train_reproduce_a_round(
    invoke: Callable[..., Result],
) -> None:
    row = json.loads(
        invoke("tune", *TINY_CLI, "--activation", "sigmoid", "--optimizer", "sgd", "--json").stdout
    )["rows"][0]
    s = row["settings"]
    args = [
        "train", "--activation", "sigmoid", "--optimizer", "sgd", "--lr", str(s["lr"]),
        "--init", s["init"], "--epochs", str(s["epochs"]), "--batch-size", str(s["batch_size"]),
        "--schedule", s["schedule"], "--standardize" if s["standardize"] else "--no-standardize",
        "--n-train", "80", "--n-test", "40", "--json",
    ]  # fmt: skip
    if s["gain"] is not None:
        args += ["--gain", str(s["gain"])]
    for r, accuracy in enumerate(row["accuracies"]):
        trained = json.loads(invoke(*args, "--seed", str(r)).stdout)
        assert trained["test_accuracy"] == accuracy


def test_cli_text_out_files_and_progress(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_output, "is_tty", lambda: True)
    result = invoke(
        "tune", *TINY_CLI, "--activation", "tanh", "--optimizer", "adam", "--out", str(tmp_path)
    )
    assert "tuning 1 row" in result.stderr
    lines = result.stdout.splitlines()
    assert "never the test set" in lines[0]
    assert lines[2].split()[:2] == ["tanh", "adam"] and lines[2].endswith("49.41 ± 1.19")
    assert lines[3] == "note: 2 rounds per row (the report's had 10): the mean and std are rougher"
    names = {p.name for p in tmp_path.iterdir()}
    assert {"tune.json", "table.csv", "table.md", "accuracy.png"} <= names
    assert (tmp_path / "diagnostics-tanh-adam.png").read_bytes()[:4] == b"\x89PNG"
    document = json.loads((tmp_path / "tune.json").read_text())
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["mean"]) for r in table] == [r["mean"] for r in document["rows"]]
    assert "2 rounds per row" in (tmp_path / "table.md").read_text()


def test_cli_model_rows_are_optimizers_and_rerun_reproduces(invoke: Callable[..., Result]) -> None:
    args = [
        *TINY_CLI,
        "--model",
        MLP,
        "--optimizer",
        "sgd,adam(eps=1e-6)",
        "--standardize",
        "on,off",
    ]
    document = json.loads(invoke("tune", *args, "--json").stdout)
    assert [(r["label"], r["activation"], r["report_mean"]) for r in document["rows"]] == [
        ("sgd", None, None), ("adam(eps=1e-6)", None, None),  # the spec as parsed
    ]  # fmt: skip
    assert document["notes"] == [] and document["config"]["model"] == MLP
    row = document["rows"][1]
    s = row["settings"]
    config = TrainConfig(model=MLP, optimizer="adam(eps=1e-6)", n_train=80, n_test=40, **s)
    assert row["accuracies"] == [run(config.replace(seed=r)).test_accuracy for r in (0, 1)]
    text = invoke("tune", *args).stdout.splitlines()
    assert text[1].split()[:2] == ["optimizer", "standardize"] and "report" not in text[1]
    error = invoke("tune", *args, "--activation", "relu", code=2)
    assert "--activation and --model exclude each other" in error.stderr


def test_cli_data_files_loss_and_config(invoke: Callable[..., Result], tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    train = write_csv(tmp_path / "train.csv", disc(120, generator))
    test = write_csv(tmp_path / "test.csv", disc(60, generator))
    config = tmp_path / "tune.toml"
    config.write_text(
        f'data = "{train}"\ntest-data = "{test}"\nloss = "cross_entropy"\n'
        'model = "linear(6), tanh, linear(2)"\n[tune]\nbudget = "quick"\nepochs = [2, 4]\n'
        'lr = [0.01]\noptimizer = "adam"\nrounds = 2\n'
    )
    document = json.loads(invoke("tune", "--config", str(config), "--json").stdout)
    [row] = document["rows"]
    assert document["config"]["loss"] == "cross_entropy" and document["budget"] == "quick"
    s = row["settings"]
    base = TrainConfig(
        data=train, test_data=test, loss="cross_entropy", model="linear(6), tanh, linear(2)"
    )
    assert row["accuracies"] == [
        run(base.replace(optimizer="adam", **s, seed=r)).test_accuracy for r in (0, 1)
    ]
    config.write_text("[tune]\nbudgett = 'quick'\n")
    assert "did you mean 'budget'?" in invoke("tune", "--config", str(config), code=2).stderr


def test_cli_jobs_do_not_change_the_numbers(invoke: Callable[..., Result]) -> None:
    args = ["tune", *TINY_CLI, "--activation", "relu", "--optimizer", "sgd,adam", "--json"]
    one = json.loads(invoke(*args).stdout)
    two = json.loads(invoke(*args, "--jobs", "2").stdout)
    assert one == two


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--epochs", "0"], "'--epochs'"),
        (["--batch-size", "x"], "'--batch-size'"),
        (["--gain", "-1"], "'--gain'"),
        (["--init", "glorot"], "unknown initializer 'glorot'"),
        (["--schedule", "linear"], "unknown schedule 'linear'"),
        (["--standardize", "maybe"], "'--standardize'"),
        (["--budget", "huge"], "'--budget'"),
        (["--validation", "1"], "'--validation'"),
        (["--seed", "999"], "round seeds must be fresh"),
        (["--lr", "0.1,0"], "'--lr'"),
        (["--optimizer", "adam(betas=0.9)"], "cannot make optimizer adam(betas=0.9)"),
    ],
)
def test_cli_usage_errors(invoke: Callable[..., Result], args: list[str], fragment: str) -> None:
    result = invoke("tune", *TINY_CLI, *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and fragment in lines[-1], lines
    assert "Traceback" not in result.output


def test_no_table_or_plot_module_trains_a_model() -> None:
    import ast
    import inspect

    from minidl.cli import plots, tables

    for module in (tables, plots):
        calls = {
            node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            for node in ast.walk(ast.parse(inspect.getsource(module)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
        }
        assert not calls & {"run", "fit", "setup", "run_round", "tune", "sweep"}, module.__name__
