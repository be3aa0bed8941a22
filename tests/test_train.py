from dataclasses import replace

import numpy as np
import pytest
import torch

from pneumolib.config import apply_profile, get_config
from pneumolib.train import FocalLoss, fit, get_device, make_loss, seed_everything


def test_fixture_training_reaches_high_accuracy(trained_run):
    # real learning on the phantoms: 10 CPU epochs separate the classes
    m = trained_run.metrics["test"]
    assert m["auc"] >= 0.9
    assert m["accuracy"] >= 0.8
    assert trained_run.fit.history[-1]["train_loss"] < trained_run.fit.history[0]["train_loss"]


def test_untrained_model_is_near_chance(fixture_data):
    # the same evaluation on an untrained net: guards against a metric that is high by construction
    from pneumolib.checkpoint import preprocessing_for
    from pneumolib.evaluate import compute_metrics, predict_samples
    from pneumolib.models import build_model

    cfg = apply_profile(get_config("04"), "fixture")
    seed_everything(0)
    s = predict_samples(build_model(in_channels=3), fixture_data["test"], preprocessing_for(cfg))
    assert compute_metrics(s, 0.5, n_boot=0)["accuracy"] <= 0.75


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 5.0])
def test_focal_loss_matches_its_formula(gamma):
    torch.manual_seed(0)
    logits, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    p_t = torch.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    expected = (-(1 - p_t) ** gamma * torch.log(p_t)).mean()
    assert torch.allclose(FocalLoss(gamma)(logits, y), expected, atol=1e-6)


def test_focal_loss_gamma_zero_is_cross_entropy_and_alpha_weights_classes():
    torch.manual_seed(1)
    logits, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    assert torch.allclose(FocalLoss(0.0)(logits, y), torch.nn.functional.cross_entropy(logits, y), atol=1e-6)
    only_pneu = FocalLoss(0.0, alpha=1.0)(logits, y)
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(only_pneu, (ce * (y == 1)).mean(), atol=1e-6)


def test_class_weighted_ce_weights_inverse_to_frequency():
    loss = make_loss(replace(get_config("01"), class_weighting="balanced"), [100, 300])
    assert torch.allclose(loss.weight, torch.tensor([2.0, 2 / 3]))


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss(replace(get_config("01"), loss="hinge"), [1, 1])


def test_device_helper_falls_back_to_cpu_and_refuses_absent_cuda():
    assert get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert get_device("auto").type in ("cpu", "mps")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            get_device("cuda")


def test_same_config_and_seed_give_identical_results_on_cpu(fixture_data, tiny_config):
    cfg = replace(tiny_config, epochs=2, max_train_images=32)
    a = fit(cfg, fixture_data, log=None, device="cpu")
    b = fit(cfg, fixture_data, log=None, device="cpu")
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    assert np.array_equal(a.val_scores.probs, b.val_scores.probs)
    c = fit(replace(cfg, seed=1), fixture_data, log=None, device="cpu")
    assert not np.array_equal(a.val_scores.probs, c.val_scores.probs)


def test_balanced_sampler_and_cosine_schedule_run(fixture_data, tiny_config):
    r = fit(replace(tiny_config, sampler="balanced", scheduler="cosine", optimizer="adamw", tta=True),
            fixture_data, log=None)
    assert len(r.history) == 1 and 0 <= r.threshold <= 1


def test_fit_writes_checkpoint_with_history(fixture_data, tiny_config, tmp_path):
    from pneumolib.checkpoint import read_checkpoint

    r = fit(tiny_config, fixture_data, tmp_path, log=None)
    state = read_checkpoint(r.checkpoint)
    assert state["extra"]["best_epoch"] == 1 and len(state["extra"]["history"]) == 1


def test_nan_loss_stops_with_epoch_and_step(fixture_data, tiny_config, monkeypatch):
    import pneumolib.train as T

    calls = []

    class NanOnSecondStep(torch.nn.Module):
        def forward(self, logits, y):
            calls.append(1)
            loss = torch.nn.functional.cross_entropy(logits, y)
            return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(T, "make_loss", lambda config, counts: NanOnSecondStep())
    with pytest.raises(FloatingPointError, match="epoch 1, step 2"):
        fit(tiny_config, fixture_data, log=None)
