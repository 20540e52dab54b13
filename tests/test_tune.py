"""Tuning: choices made on a validation split of the training points, never the test set."""

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from clitools import invoke

import minidl
from minidl.cli import output as cli_output
from minidl.data import disc
from minidl.sweep import table_i_row
from minidl.tune import (
    INITS,
    TABLE_ONE,
    Budget,
    _epoch_free,
    count_runs,
    default_candidates,
    grid,
    search,
    tune,
)

TINY = minidl.TrainConfig(hidden=[6, 6], n_train=120, n_test=60, batch_size=40, optimizer="sgd")
TINY_BUDGET = Budget(epochs=(3, 6), seeds=(1000, 1001), finalists=2, confirm_seeds=(1002,))


def test_validation_split_is_carved_from_training_points() -> None:
    config = minidl.TrainConfig(n_train=100, n_test=50, seed=4)
    train, test = minidl.experiment.load_data(config)
    fit_part, val = minidl.experiment.load_data(config.replace(validation=0.2))
    assert (len(fit_part), len(val)) == (80, 20)
    rows = {tuple(r) for r in train.x.tolist()}
    assert all(tuple(r) in rows for r in fit_part.x.tolist() + val.x.tolist())
    assert not {tuple(r) for r in fit_part.x.tolist()} & {tuple(r) for r in val.x.tolist()}
    assert not rows & {tuple(r) for r in test.x.tolist()}
    with pytest.raises(ValueError, match="validation must be a fraction"):
        minidl.experiment.load_data(config.replace(validation=1.5))


def write_csv(path, data: minidl.Dataset) -> str:  # type: ignore[no-untyped-def]
    rows = torch.cat([data.x, data.y], 1).tolist()
    path.write_text("x,y,label\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def test_search_never_reads_the_test_set(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The test file does not exist: the whole search must run without it, and only the
    # test rounds may then fail for want of it.
    train = write_csv(tmp_path / "train.csv", disc(150, torch.Generator().manual_seed(0)))
    base = TINY.replace(data=train, test_data=str(tmp_path / "missing.csv"))
    candidates = grid(lr=[0.3, 1.0], epochs=[3, 6])
    trials = search(base, candidates, seeds=(1, 2))
    assert len(trials) == 4 and all(len(t.accuracies) == 2 for t in trials)
    with pytest.raises(minidl.DataError, match="missing.csv: no such file"):
        tune(base, candidates, budget=TINY_BUDGET, rounds=1)


def test_test_set_changes_nothing_before_the_rounds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(1)
    train = write_csv(tmp_path / "train.csv", disc(150, generator))
    test = disc(80, generator)
    honest = write_csv(tmp_path / "test.csv", test)
    flipped = write_csv(tmp_path / "flipped.csv", minidl.Dataset(test.x, 1 - test.y))
    candidates = grid(lr=[0.3, 1.0], epochs=[3, 6])
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
        candidates = grid(lr=[0.5], epochs=[3, 6], schedule=[schedule])
        trials = search(TINY, candidates, seeds=(7,))
        for t in trials:
            config = TINY.replace(**t.settings, seed=7, validation=0.2)
            assert t.accuracies == [minidl.run(config).test_accuracy]


def test_epoch_free_schedules() -> None:
    config = minidl.TrainConfig(lr=0.1)
    assert _epoch_free(config.replace(schedule="constant"), [10, 50])
    assert _epoch_free(config.replace(schedule="step"), [10, 50])
    assert not _epoch_free(config.replace(schedule="cosine"), [10, 50])


def test_trials_are_ranked_by_mean_validation_accuracy() -> None:
    trials = search(TINY, grid(lr=[0.01, 0.3, 1.0], epochs=[2, 6]), seeds=(1, 2))
    means = [t.mean for t in trials]
    assert means == sorted(means, reverse=True)
    assert all(t.seeds == [1, 2] for t in trials)


def test_tune_reports_rounds_that_rerun_reproduces() -> None:
    ticks: list[int] = []
    candidates = grid(lr=[0.3, 1.0], epochs=[3, 6], schedule=["constant", "cosine"])
    result = tune(TINY, candidates, budget=TINY_BUDGET, rounds=2, progress=ticks.append)
    assert sum(ticks) == count_runs(TINY, candidates, TINY_BUDGET, 2)
    assert result.chosen == result.trials[0].settings
    # The finalists were confirmed on more seeds, and the best of them was chosen.
    finalists = result.trials[: TINY_BUDGET.finalists]
    assert all(t.seeds == [1000, 1001, 1002] for t in finalists)
    assert result.validation.mean == max(t.mean for t in finalists)
    # Re-running the chosen settings as a plain training run gives the reported accuracy.
    for seed, accuracy in enumerate(result.accuracies):
        rerun = minidl.run(TINY.replace(**result.chosen, seed=seed))
        assert rerun.test_accuracy == accuracy
    assert result.mean == pytest.approx(sum(result.accuracies) / 2)


def test_diverged_candidates_rank_last() -> None:
    # Without the output sigmoid, a huge step sends the squared error to infinity.
    base = TINY.replace(model="linear(6), relu, linear(1)")
    trials = search(base, grid(lr=[0.3, 1e6], epochs=[4]), seeds=(1,))
    assert trials[-1].settings["lr"] == 1e6 and trials[-1].diverged
    assert math.isinf(trials[-1].std) and trials[-1].mean == 0.0


def test_round_seeds_must_be_fresh() -> None:
    with pytest.raises(ValueError, match=r"round seeds must be fresh, but \[1000, 1001\]"):
        tune(TINY.replace(seed=995), grid(lr=[0.1]), budget=TINY_BUDGET, rounds=7)


def test_only_tunable_settings() -> None:
    with pytest.raises(ValueError, match="cannot tune 'hidden'; tunable settings: standardize"):
        grid(hidden=[[5]])
    with pytest.raises(ValueError, match="cannot tune 'optimizer'"):
        search(TINY, [{"optimizer": "adam"}])
    with pytest.raises(ValueError, match="no values to try for 'lr'"):
        grid(lr=[])


def test_default_candidates_cover_the_research_grid() -> None:
    candidates = default_candidates("sigmoid", "sgd")
    assert {(c["init"], c["gain"]) for c in candidates} == {("xavier", 2.0), ("xavier", 4.0)}
    assert all(c["standardize"] for c in candidates)
    assert {c["schedule"] for c in candidates} == {"cosine"}
    assert len(candidates) == 2 * 3 * 3  # inits x learning rates x epoch counts
    wider = default_candidates("relu", "adam", schedules=("constant", "cosine"), lrs=[0.1])
    assert {(c["schedule"], c["lr"]) for c in wider} == {("constant", 0.1), ("cosine", 0.1)}


# --- minidl-run tune -----------------------------------------------------------------

# One candidate per row, tiny data: the search still runs all three stages.
TINY_CLI = ["--budget", "quick", "--epochs", "2,4", "--lr", "0.3", "--n-train", "80"]
TINY_CLI += ["--n-test", "40", "--rounds", "2"]


def test_cli_json_rows_are_sweep_rows_plus_settings() -> None:
    document = json.loads(invoke("tune", *TINY_CLI, "--json").stdout)
    rows = document["rows"]
    assert [(r["activation"], r["optimizer"]) for r in rows] == list(TABLE_ONE)
    sweep_row = json.loads(
        invoke(
            "sweep", "--rounds", "1", "--epochs", "1", "--n-train", "20", "--n-test", "10",
            "--activation", "relu", "--optimizer", "sgd", "--json",
        ).stdout
    )["rows"][0]  # fmt: skip
    for r, (activation, optimizer) in zip(rows, TABLE_ONE, strict=True):
        assert set(sweep_row) <= set(r)
        assert len(r["accuracies"]) == r["rounds"] == 2
        assert r["mean"] == pytest.approx(statistics.mean(r["accuracies"]))
        assert r["std"] == pytest.approx(statistics.stdev(r["accuracies"]))
        assert r["lr"] == r["settings"]["lr"] == 0.3
        assert r["settings"]["epochs"] in (2, 4) and r["settings"]["standardize"] is True
        assert (r["settings"]["init"], r["settings"]["gain"]) in INITS[activation]
        assert len(r["validation"]["accuracies"]) == 4  # 2 tuning seeds + 2 confirming
        assert r["report_mean"] == table_i_row(activation, optimizer).report_mean


def test_cli_chosen_settings_rerun_through_train_reproduce_a_round() -> None:
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


def test_cli_text_out_files_and_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_output, "is_tty", lambda: True)
    result = invoke(
        "tune", *TINY_CLI, "--activation", "tanh", "--optimizer", "adam", "--out", str(tmp_path)
    )
    assert "tuning 1 row" in result.stderr
    lines = result.stdout.splitlines()
    assert "never the test set" in lines[0]
    assert lines[2].split()[:2] == ["tanh", "adam"] and lines[2].endswith("49.41 ± 1.19")
    names = {p.name for p in tmp_path.iterdir()}
    assert {"tune.json", "table.csv", "table.md", "accuracy.png"} <= names
    assert (tmp_path / "diagnostics-tanh-adam.png").read_bytes()[:4] == b"\x89PNG"
    document = json.loads((tmp_path / "tune.json").read_text())
    with open(tmp_path / "table.csv") as f:
        table = list(csv.DictReader(f))
    assert [float(r["mean"]) for r in table] == [r["mean"] for r in document["rows"]]


def test_cli_jobs_do_not_change_the_numbers() -> None:
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
        (["--budget", "huge"], "'--budget'"),
        (["--validation", "1"], "'--validation'"),
        (["--seed", "999"], "round seeds must be fresh"),
    ],
)
def test_cli_usage_errors(args: list[str], fragment: str) -> None:
    result = invoke("tune", *TINY_CLI, *args, code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], lines
