"""Callbacks: the loop's events and their order, stopping, errors, and the built-ins
against their references (torch's clip_grad_norm_, a run trained for the best epoch's
count, tensorboard's own reader)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import minidl
from minidl import Callback, Trainer
from minidl.callbacks import handlers
from minidl.cli import TrainConfig, run
from minidl.plugins import MSE, SGD, Adam, ClipGradNorm, EarlyStopping

SMALL = TrainConfig(n_train=200, n_test=100, batch_size=50, epochs=4, lr=1e-2)


def model_and_data(seed: int = 0):  # type: ignore[no-untyped-def]
    train, test = minidl.create("dataset", "disc", n_train=200, n_test=100, seed=seed)
    torch.manual_seed(seed)
    model = minidl.build("linear(8), tanh, linear(1), sigmoid", (2,))
    return model, train, test


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_train_start(self, trainer: Trainer, model: object) -> None:
        self.events.append("train_start")

    def on_epoch_start(self, trainer: Trainer, model: object) -> None:
        self.events.append(f"epoch_start {trainer.epoch} lr={trainer.optimizer.lr:g}")

    def on_after_backward(self, trainer: Trainer, model: object) -> None:
        assert bool(trainer.optimizer.grad.abs().sum() > 0)  # gradients are ready
        self.events.append("after_backward")

    def on_batch_end(self, trainer: Trainer, model: object) -> None:
        self.events.append(f"batch_end {trainer.global_step}")

    def on_epoch_end(self, trainer: Trainer, model: object) -> None:
        self.events.append(f"epoch_end {trainer.record['epoch']} {sorted(trainer.record)[0]}")

    def on_train_end(self, trainer: Trainer, model: object) -> None:
        self.events.append(f"train_end {len(trainer.history)}")


def test_events_come_in_the_documented_order() -> None:
    model, train, test = model_and_data()
    recorder = Recorder()
    minidl.fit(
        model,
        MSE(),
        SGD(model.parameters(), lr=0.1),
        minidl.Dataset(train.x[:100], train.y[:100]),
        test,
        epochs=2,
        batch_size=50,
        schedule=lambda epoch: 0.1 / epoch,
        callbacks=[recorder],
    )
    step = ["after_backward", "batch_end 1", "after_backward", "batch_end 2"]
    second = ["after_backward", "batch_end 3", "after_backward", "batch_end 4"]
    assert recorder.events == [
        "train_start",
        "epoch_start 1 lr=0.1",
        *step,
        "epoch_end 1 epoch",
        "epoch_start 2 lr=0.05",
        *second,
        "epoch_end 2 epoch",
        "train_end 2",
    ]


def test_only_the_events_a_callback_overrides_are_called() -> None:
    class OnlyEpochs(Callback):
        def on_epoch_end(self, trainer: Trainer, model: object) -> None: ...

    found = handlers([OnlyEpochs(), lambda record, model: None])
    assert [len(found[e]) for e in ("on_after_backward", "on_batch_end", "on_epoch_end")] == [
        0,
        0,
        2,
    ]
    with pytest.raises(TypeError, match="is not a callback"):
        handlers([42])


def test_a_callback_of_minidl_0_2_still_adds_keys_to_the_record() -> None:
    model, train, test = model_and_data()
    history = minidl.fit(
        model,
        MSE(),
        SGD(model.parameters(), lr=0.1),
        train,
        test,
        epochs=2,
        callbacks=[lambda record, model: record.update(norm=float(model[0].weight.data.norm()))],
    )
    assert all("norm" in r for r in history)
    # Each record holds the weights' norm at its epoch's end: the last is the final model's.
    assert history[-1]["norm"] == float(model[0].weight.data.norm())
    assert history[0]["norm"] != history[-1]["norm"]


@pytest.mark.parametrize("event", ["on_epoch_end", "on_batch_end", "on_after_backward"])
def test_a_stop_ends_training_cleanly_and_says_when_and_why(event: str) -> None:
    class StopAtTwo(Callback):
        pass

    def stop(self: Callback, trainer: Trainer, model: object) -> None:
        if trainer.epoch == 2:
            trainer.stop("enough")

    setattr(StopAtTwo, event, stop)
    ended = Recorder()
    model, train, test = model_and_data()
    history = minidl.fit(
        model,
        MSE(),
        SGD(model.parameters(), lr=0.1),
        train,
        test,
        epochs=5,
        batch_size=50,
        callbacks=[StopAtTwo(), ended],
    )
    assert [r["epoch"] for r in history] == [1, 2]
    assert history.info == {"stopped_epoch": 2, "stop_reason": "enough"}
    assert "test_accuracy" in history[-1]  # the stopped epoch is evaluated
    assert ended.events[-1] == "train_end 2"
    steps_in_epoch_two = sum(e.startswith("batch_end") for e in ended.events) - 4
    assert steps_in_epoch_two == (4 if event == "on_epoch_end" else 1)


def test_an_error_in_a_callback_names_it_and_the_event() -> None:
    class Broken(Callback):
        def on_batch_end(self, trainer: Trainer, model: object) -> None:
            if trainer.global_step == 3:
                raise ZeroDivisionError("boom")

    model, train, _ = model_and_data()
    with pytest.raises(ZeroDivisionError, match="boom") as e:  # the callback's own, as it was
        minidl.fit(
            model,
            MSE(),
            SGD(model.parameters(), lr=0.1),
            train,
            batch_size=50,
            callbacks=[Broken()],
        )
    where = e.value.minidl_callback  # type: ignore[attr-defined]
    assert where == "callback Broken failed in on_batch_end at epoch 1"


def test_the_cli_reports_a_failing_callback_in_one_line_with_exit_1(invoke, plugin) -> None:  # type: ignore[no-untyped-def]
    class Fails(Callback):
        def on_epoch_end(self, trainer: Trainer, model: object) -> None:
            if trainer.epoch == 2:
                raise ValueError("disk full")  # not a usage error: a failed run

    class Plugin:
        @staticmethod
        def register_callbacks(register):  # type: ignore[no-untyped-def]
            register("fails", Fails)

    plugin(Plugin())
    result = invoke("train", "--callback", "fails", "--epochs", "3", "--n-train", "100", code=1)
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: callback fails failed in on_epoch_end at epoch 2: ValueError: disk full"
    )


def test_bad_callback_specs_name_what_is_valid(invoke) -> None:  # type: ignore[no-untyped-def]
    unknown = invoke("train", "--callback", "early_stoping", code=2).stderr
    assert "unknown callback 'early_stoping'. Available names:" in unknown
    assert "early_stopping" in unknown
    setting = invoke("train", "--callback", "early_stopping(patiense=3)", code=2).stderr
    assert "has no setting 'patiense'; its settings: monitor, patience, min_delta" in setting
    value = invoke("train", "--callback", "early_stopping(patience=0)", code=2).stderr
    assert "patience must be a whole number of epochs >= 1, got 0" in value
    outside = invoke("train", "--validation", "1.5", code=2).stderr
    assert "--validation" in outside and "1.5" in outside


def test_early_stopping_needs_a_validation_split_for_val_keys_and_never_reads_test(invoke) -> None:  # type: ignore[no-untyped-def]
    missing = invoke("train", "--callback", "early_stopping", "--epochs", "2", code=2).stderr
    assert "no validation split" in missing and "--validation FRACTION" in missing
    test = invoke("train", "--callback", "early_stopping(monitor='test_loss')", code=2).stderr
    assert "never looks at the test set" in test
    typo = invoke(
        "train", "--callback", "early_stopping(monitor='val_los')", "--validation", "0.2", code=2
    ).stderr
    assert "did you mean 'val_loss'?" in typo


def test_early_stopping_restores_the_weights_a_run_of_the_best_epoch_count_ends_with() -> None:
    """The reference: a fresh run trained for exactly the best epoch's count."""
    config = SMALL.replace(epochs=40, lr=0.05, validation=0.25, optimizer="sgd")
    stopper = "early_stopping(patience=3, min_delta=1e-4)"
    stopped = run(config.replace(callbacks=[stopper]))
    info = stopped.history.info
    best, end = info["best_epoch"], info["stopped_epoch"]
    assert end == best + 3 == len(stopped.history) < 40
    val = [r["val_loss"] for r in stopped.history]
    assert min(val[:best]) == val[best - 1] == info["best"]
    assert all(v >= info["best"] - 1e-4 for v in val[best:])  # no improvement by min_delta
    reference = run(config.replace(epochs=best))
    for p, q in zip(stopped.model.parameters(), reference.model.parameters(), strict=True):
        assert torch.equal(p.data, q.data)
    assert stopped.final == reference.history[-1] | {"epoch": best}
    assert stopped.test_accuracy == reference.test_accuracy


def test_early_stopping_in_mode_max_waits_for_patience() -> None:
    stopper = EarlyStopping(monitor="train_accuracy", patience=2, mode="max", min_delta=0.01)
    trainer = Trainer(model=None, loss=None, optimizer=None, train=None)  # type: ignore[arg-type]
    model, _, _ = model_and_data()
    decided = []
    for epoch, accuracy in enumerate([0.5, 0.7, 0.705, 0.8, 0.805, 0.809], start=1):
        trainer.epoch = epoch
        trainer.history.append({"epoch": epoch, "train_accuracy": accuracy})
        stopper.on_epoch_end(trainer, model)
        decided.append(trainer.should_stop)
    assert decided == [False, False, False, False, False, True]
    assert (stopper.best, stopper.best_epoch) == (0.8, 4)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 3.0])
@pytest.mark.parametrize("flat", [True, False])
def test_clip_grad_norm_equals_torch(norm_type: float, flat: bool) -> None:
    torch.manual_seed(0)
    model = minidl.build("linear(5), tanh, linear(3)", (4,)).to(torch.float64)
    grads = [torch.randn_like(p.data) * 3 for p in model.parameters()]
    reference = [g.clone().requires_grad_() for g in grads]
    for r, g in zip(reference, grads, strict=True):
        r.grad = g.clone()
    expected = torch.nn.utils.clip_grad_norm_(reference, max_norm=1.5, norm_type=norm_type)
    assert float(expected) > 1.5  # clipping happens
    optimizer = SGD(model.parameters(), lr=0.1) if flat else object()
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad.copy_(g)
    trainer = Trainer(model, MSE(), optimizer, None)  # type: ignore[arg-type]
    ClipGradNorm(1.5, norm_type).on_after_backward(trainer, model)
    for p, r in zip(model.parameters(), reference, strict=True):
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-12, atol=0)


def test_clip_grad_norm_in_training_equals_a_torch_loop_with_clip_grad_norm() -> None:
    from benchmarks.twin import torch_twin

    model, train, _ = model_and_data()
    model.to(torch.float64)
    net = torch_twin(model)
    twin_optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    optimizer = Adam(model.parameters(), lr=0.05)
    data = train.to("cpu", torch.float64)
    minidl.fit(
        model, MSE(), optimizer, data, epochs=1, batch_size=200, callbacks=[ClipGradNorm(0.01)]
    )
    twin_optimizer.zero_grad()
    torch.nn.functional.mse_loss(net(data.x), data.y).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 0.01)
    twin_optimizer.step()
    for p, q in zip(model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p.data, q.detach(), rtol=1e-10, atol=1e-12)


def test_tensorboard_logs_every_number_of_every_epoch(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run(SMALL.replace(callbacks=[f"tensorboard(log_dir={str(tmp_path)!r})"]))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {
        "lr",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
    }
    for key in ("train_loss", "test_accuracy", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in result.history]
        assert logged == expected


def test_tensorboard_without_the_package_names_the_extra(monkeypatch, invoke) -> None:  # type: ignore[no-untyped-def]
    for module in ("torch.utils.tensorboard", "tensorboardX"):
        monkeypatch.setitem(sys.modules, module, None)
    message = invoke("train", "--callback", "tensorboard", "--epochs", "1", code=2).stderr
    assert 'pip install "minidl[tensorboard]"' in message


def test_history_csv_grows_by_a_row_per_epoch_and_survives_kill_9(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "minidl.cli",
        "train",
        "--epochs",
        "100000",
        "--n-train",
        "200",
        "--out",
        str(out),
        "--no-diagnostics",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history = out / "history.csv"
    try:
        deadline = time.monotonic() + 120
        rows: list[dict[str, str]] = []
        while len(rows) < 3:  # event-wait: poll the file until three epochs are in it
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no three rows in history.csv in 2 minutes"
            if history.exists():
                rows = list(csv.DictReader(history.open()))
            time.sleep(0.05)  # event-wait
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    lines = history.read_text().splitlines()
    rows = list(csv.DictReader(lines))
    assert lines[0].startswith("epoch,lr,train_loss,train_accuracy,test_loss,test_accuracy")
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(len(line.split(",")) == len(lines[0].split(",")) for line in lines)
    assert not (out / "metrics.json").exists()


def test_a_resumed_run_with_early_stopping_ends_where_the_uninterrupted_one_does(
    tmp_path: Path, invoke, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from minidl.cli import plots
    from minidl.cli.checkpoint import Checkpointer
    from minidl.cli.signals import Interrupted

    monkeypatch.setattr(Checkpointer, "every_s", 0.0)
    monkeypatch.setattr(plots, "available", lambda: False)
    args = [
        "train",
        "--n-train", "200", "--n-test", "100", "--batch-size", "50", "--epochs", "60",
        "--lr", "0.05", "--optimizer", "sgd", "--validation", "0.25", "--no-diagnostics",
        "--callback", "early_stopping(patience=3, min_delta=1e-4)",
    ]  # fmt: skip
    invoke(*args, "--out", str(tmp_path / "whole"))
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert whole["stopped_epoch"] < 60

    # Interrupt inside the patience window: after the best epoch, before the stop.
    at = whole["best_epoch"] + 1
    original = EarlyStopping.on_epoch_end

    def interrupted(self: EarlyStopping, trainer: Trainer, model: object) -> None:
        original(self, trainer, model)
        if trainer.epoch == at:
            raise Interrupted(signal.SIGINT)

    monkeypatch.setattr(EarlyStopping, "on_epoch_end", interrupted)
    invoke(*args, "--out", str(tmp_path / "split"), code=130)
    monkeypatch.setattr(EarlyStopping, "on_epoch_end", original)
    invoke("train", "--out", str(tmp_path / "split"), "--resume")
    split = json.loads((tmp_path / "split" / "metrics.json").read_text())
    for key in ("stopped_epoch", "best_epoch", "best", "test_accuracy", "test_loss", "epochs"):
        assert split[key] == whole[key], key
    same = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "split" / "model.safetensors").read_bytes() == same


def test_a_plugin_callback_stops_every_data_parallel_rank_and_logs_once(
    tmp_path: Path, invoke, plugin, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "stop_at.py"
    source.write_text(
        "import minidl\n"
        "class StopAt(minidl.Callback):\n"
        "    def on_epoch_end(self, trainer, model):\n"
        "        if trainer.is_global_zero:\n"
        "            with open('epochs.log', 'a') as f:\n"
        "                f.write(f'{trainer.epoch}\\n')\n"
        "        if trainer.epoch == 3:\n"
        "            trainer.stop('three')\n"
        "@minidl.hookimpl\n"
        "def register_callbacks(register):\n"
        "    register('stop_at', StopAt)\n"
    )
    common = ["--epochs", "10", "--n-train", "200", "--n-test", "100", "--dtype", "float64"]
    args = ["train", "--callback", "stop_at", "--json", "--quiet", *common]
    for nproc in ("1", "2"):
        (tmp_path / f"n{nproc}").mkdir()
    # One process, here (the `plugin` fixture forgets the -p plugin afterwards) ...
    monkeypatch.chdir(tmp_path / "n1")
    single = json.loads(invoke("-p", str(source), *args).stdout)
    # ... and two ranks, each loading the plugin itself.
    done = subprocess.run(
        [sys.executable, "-m", "minidl.cli", "-p", str(source), *args, "--nproc", "2"],
        cwd=tmp_path / "n2", capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parallel = json.loads(done.stdout)
    for nproc in ("1", "2"):
        assert (tmp_path / f"n{nproc}" / "epochs.log").read_text().split() == ["1", "2", "3"]
    assert parallel["stopped_epoch"] == single["stopped_epoch"] == 3
    assert parallel["test_loss"] == pytest.approx(single["test_loss"], rel=1e-9)


def test_plugins_json_lists_the_callbacks_with_their_settings(invoke) -> None:  # type: ignore[no-untyped-def]
    plugins = json.loads(invoke("plugins", "--json").stdout)["plugins"]
    (ours,) = [p for p in plugins if p["name"] == "minidl.callbacks"]
    assert ours["settings"]["callback"]["early_stopping"] == {
        "monitor": "val_loss",
        "patience": 10,
        "min_delta": 0.0,
        "mode": "min",
        "restore_best": True,
    }


def test_sweep_makes_the_callbacks_in_its_workers(tmp_path: Path, invoke) -> None:  # type: ignore[no-untyped-def]
    """A callback that leaves a mark per run: every round of a sweep, in 2 worker processes,
    makes its own (tune's runs go through the same minidl.cli.run)."""
    plugin = tmp_path / "mark.py"
    plugin.write_text(
        "import os, minidl\n"
        "class Mark(minidl.Callback):\n"
        "    def __init__(self, where):\n"
        "        self.where = where\n"
        "    def on_train_start(self, trainer, model):\n"
        "        open(os.path.join(self.where, f'{os.getpid()}-{id(self)}'), 'w').close()\n"
        "@minidl.hookimpl\n"
        "def register_callbacks(register):\n"
        "    register('mark', Mark)\n"
    )
    for command, extra in (
        ("sweep", ["--rounds", "2", "--jobs", "2", "--epochs", "2", "--n-train", "80"]),
    ):
        marks = tmp_path / command
        marks.mkdir()
        spec = f"mark(where={str(marks)!r})"
        done = subprocess.run(
            [sys.executable, "-m", "minidl.cli", "-p", str(plugin), command, "--callback", spec,
             "--activation", "tanh", "--optimizer", "adam", "--json", *extra],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs = len(list(marks.iterdir()))
        assert runs >= 2, (command, runs)
        if command == "sweep":
            assert runs == 2  # one per round, made in a worker process
