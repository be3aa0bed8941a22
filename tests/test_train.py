from dataclasses import replace

import numpy as np
import pytest
import torch

from pneumolib.core.config import apply_profile
from pneumolib.core.runtime import get_device, seed_everything
from pneumolib.studies.catalogue import get_config
from pneumolib.training.fit import FocalLoss, fit, make_loss


def test_fixture_training_learns_far_above_chance(trained_run):
    # real learning on the phantoms. The margin is wide on purpose: CPU kernels differ between machines, so the
    # exact accuracy moves by a film or two (a fresh clone elsewhere got 19/24 where this machine got 20/24); a
    # broken training loop gives AUC near 0.5, far below this bar
    m = trained_run.metrics["test"]
    assert m["auc"] >= 0.75
    assert trained_run.fit.history[-1]["train_loss"] < 0.8 * trained_run.fit.history[0]["train_loss"]


def test_untrained_model_is_near_chance(fixture_data):
    # the same evaluation on an untrained net: guards against a metric that is high by construction
    from pneumolib.analysis.evaluate import compute_metrics, predict_samples
    from pneumolib.models.checkpoint import preprocessing_for
    from pneumolib.models.networks import build_model

    cfg = apply_profile(get_config("04"), "fixture")
    seed_everything(0)
    s = predict_samples(build_model(in_channels=3), fixture_data["test"], preprocessing_for(cfg))
    assert compute_metrics(s, 0.5, n_boot=0)["accuracy"] <= 0.75


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0, 5.0])
def test_focal_loss_matches_its_formula(gamma):
    torch.manual_seed(0)
    logits, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    p_t = torch.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    expected = (-((1 - p_t) ** gamma) * torch.log(p_t)).mean()
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


def test_unknown_loss_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="loss='hinge' is not one of: ce, focal"):
        replace(get_config("01"), loss="hinge")


def test_registries_implement_exactly_the_names_config_allows():
    from pneumolib.core import config as C
    from pneumolib.training import fit as T

    assert set(T.LOSSES) == set(C.LOSSES)
    assert set(T.OPTIMIZERS) == set(C.OPTIMIZERS)
    assert set(T.SCHEDULERS) == set(C.SCHEDULERS)
    assert set(T.SAMPLERS) == set(C.SAMPLERS)


def test_device_helper_falls_back_to_cpu_and_refuses_absent_cuda():
    assert get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert get_device("auto").type in ("cpu", "mps")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            get_device("cuda")


def test_same_config_and_seed_give_identical_results_on_cpu(fixture_data, tiny_config):
    cfg = replace(tiny_config, epochs=2, max_train_images=32)
    a = fit(cfg, fixture_data, device="cpu")
    b = fit(cfg, fixture_data, device="cpu")
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    assert np.array_equal(a.val_scores.probs, b.val_scores.probs)
    c = fit(replace(cfg, seed=1), fixture_data, device="cpu")
    assert not np.array_equal(a.val_scores.probs, c.val_scores.probs)


def test_balanced_sampler_draws_both_classes_equally_often():
    from pneumolib.training.fit import SAMPLERS

    labels = torch.tensor([0] * 100 + [1] * 300)  # the training folders' 1:3 mix
    drawn = labels[list(SAMPLERS["balanced"](labels, torch.Generator().manual_seed(0)))]
    assert abs(float(drawn.float().mean()) - 0.5) < 0.08  # binomial sd at n=400 is 0.025
    shuffled = labels[list(SAMPLERS["shuffle"](labels, torch.Generator().manual_seed(0)))]
    assert sorted(shuffled.tolist()) == sorted(labels.tolist())  # a permutation keeps the mix


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_run(fixture_data, tiny_config, monkeypatch):
    import pneumolib.training.fit as T

    seen = {}
    real = T.SCHEDULERS["cosine"]

    def spy(opt, steps):
        seen["opt"], seen["steps"] = opt, steps
        return real(opt, steps)

    monkeypatch.setitem(T.SCHEDULERS, "cosine", spy)
    cfg = replace(tiny_config, scheduler="cosine", epochs=2, max_train_images=32)
    fit(cfg, fixture_data)
    assert seen["steps"] == 2 * (32 // cfg.batch_size)
    assert seen["opt"].param_groups[0]["lr"] < 1e-3 * cfg.lr  # ended at the bottom of the cosine


def test_fit_writes_checkpoint_with_history(fixture_data, tiny_config, tmp_path):
    from pneumolib.models.checkpoint import read_checkpoint

    r = fit(tiny_config, fixture_data, tmp_path)
    state = read_checkpoint(r.checkpoint)
    assert state["extra"]["best_epoch"] == 1 and len(state["extra"]["history"]) == 1


def test_nan_loss_stops_with_epoch_and_step(fixture_data, tiny_config, monkeypatch):
    import pneumolib.training.fit as T

    calls = []

    class NanOnSecondStep(torch.nn.Module):
        def forward(self, logits, y):
            calls.append(1)
            loss = torch.nn.functional.cross_entropy(logits, y)
            return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(T, "make_loss", lambda config, counts: NanOnSecondStep())
    with pytest.raises(FloatingPointError, match="epoch 1, step 2"):
        fit(tiny_config, fixture_data)


def test_threshold_is_chosen_on_validation_not_test(fixture_data, tiny_config, monkeypatch):
    import pneumolib.analysis.evaluate as T

    seen = []
    real = T.choose_threshold
    monkeypatch.setattr(T, "choose_threshold", lambda rule, y, p: seen.append(p.copy()) or real(rule, y, p))
    r = fit(replace(tiny_config, threshold="youden"), fixture_data)
    assert len(seen) == 1 and np.array_equal(seen[0], r.val_scores.probs)
    assert [s.split for s in r.val_scores.samples] == ["val"] * len(fixture_data["val"])
    assert r.threshold == real("youden", r.val_scores.labels, r.val_scores.probs)


def test_threshold_is_fitted_on_the_best_epoch_not_the_last(fixture_data, tiny_config, tmp_path, monkeypatch):
    # validation loss made to rise after epoch 1, so the kept (best) model is not the last one; the threshold must
    # come from the best model's validation scores
    import pneumolib.training.fit as T
    from pneumolib.analysis.evaluate import fit_threshold
    from pneumolib.models.checkpoint import Predictor

    real_row, real_predict, seen = T._val_row, T.predict_samples, []

    def rising(epoch, *a, **k):
        return dict(real_row(epoch, *a, **k), val_loss=float(epoch))

    def recording(model, *a, **k):
        seen.append(float(sum(p.double().sum() for p in model.parameters())))
        return real_predict(model, *a, **k)

    monkeypatch.setattr(T, "_val_row", rising)
    monkeypatch.setattr(T, "predict_samples", recording)
    r = fit(replace(tiny_config, epochs=3, threshold="youden"), fixture_data, tmp_path / "run")
    assert r.best_epoch == 1 and len(seen) == 4  # one validation per epoch, then the best model's
    assert seen[3] == seen[0] != seen[2]  # the threshold's scores come from epoch 1's weights, not epoch 3's
    best = Predictor.load(r.checkpoint)
    assert r.threshold == pytest.approx(fit_threshold("youden", best.model, r.val_scores, best.preprocessing), abs=1e-9)
    assert best.threshold == pytest.approx(r.threshold, abs=1e-9)


def test_stream_seeds_differ_by_epoch_and_stream():
    from pneumolib.training.fit import stream_seed

    seeds = {stream_seed(0, e, s) for e in (1, 2) for s in ("sampling", "augment")} | {stream_seed(1, 1, "augment")}
    assert len(seeds) == 5 and all(0 <= x < 2**63 for x in seeds)


def test_fine_tuning_starts_from_the_checkpoint(fixture_data, tiny_config, trained_run, tmp_path):
    # the first epoch's val loss of a run started from a trained fixture checkpoint is far below a random-init run's
    ckpt = trained_run.run_dir / "checkpoint.pt"
    base = replace(tiny_config, in_channels=3, max_train_images=16, lr=1e-5)  # fine-tuning: a gentle step
    scratch = fit(base, fixture_data)
    tuned = fit(replace(base, init_from=str(ckpt)), fixture_data)
    assert tuned.history[0]["val_loss"] < 0.7 * scratch.history[0]["val_loss"]
    assert tuned.history[0]["val_auc"] >= 0.75


def test_fine_tuning_refuses_a_checkpoint_of_other_channels(fixture_data, tiny_config, trained_run):
    from pneumolib.models.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="in_channels: checkpoint 3, this run 1"):
        fit(replace(tiny_config, init_from=str(trained_run.run_dir / "checkpoint.pt")), fixture_data)


def test_fine_tuning_from_an_ensemble_checkpoint_is_refused_in_one_line_regression(fixture_data, tiny_config, tmp_path):
    """The recipe's served checkpoint is an ensemble: init_from raised torch's bare 'Missing key(s)' RuntimeError."""
    from pneumolib.models.checkpoint import CheckpointError, save_checkpoint
    from pneumolib.models.networks import Ensemble, build_model

    cfg = replace(tiny_config, in_channels=1)
    nets = [build_model(cfg.model, in_channels=1) for _ in range(2)]
    ckpt = save_checkpoint(tmp_path / "ens.pt", Ensemble(nets, combine="logit"), cfg, 0.5, {})
    with pytest.raises(CheckpointError, match="an ensemble of 2 networks, not one.*members/seedN/checkpoint.pt"):
        fit(replace(cfg, init_from=str(ckpt or tmp_path / "ens.pt")), fixture_data)


@pytest.mark.parametrize("val_loss, kept", [(lambda e: float(e), 1), (lambda e: -float(e), 3)])
def test_the_last_epochs_test_metrics_are_reported_beside_the_kept_epochs(
    fixture_data, tiny_config, tmp_path, monkeypatch, val_loss, kept
):
    # issue 24: best-epoch and last-epoch test metrics both shown; last_epoch.pt is kept only when they differ
    import pneumolib.training.fit as T
    from pneumolib.studies.experiment import run_experiment

    real_row = T._val_row
    monkeypatch.setattr(T, "_val_row", lambda epoch, *a, **k: dict(real_row(epoch, *a, **k), val_loss=val_loss(epoch)))
    r = run_experiment(tiny_config, None, tmp_path / "run", data=fixture_data, cam_per_class=0, overrides={"epochs": 3})
    last = r.metrics["test_last_epoch"]
    assert r.metrics["best_epoch"] == kept
    if kept == 3:
        assert last == {"epoch": 3, "same_as_kept": True} and not (tmp_path / "run" / "last_epoch.pt").exists()
    else:
        saved = torch.load(tmp_path / "run" / "last_epoch.pt", weights_only=True)
        assert saved["epoch"] == 3 and last["epoch"] == 3 and 0 <= last["specificity"] <= 1
        kept_w = r.predictor.model.state_dict()
        assert any(not torch.equal(kept_w[k], saved["state_dict"][k]) for k in kept_w)  # other weights than the kept
        # reused later (no training): the same last-epoch metrics from the file
        again = run_experiment(
            tiny_config, None, tmp_path / "run", data=fixture_data, cam_per_class=0, overrides={"epochs": 3}
        )
        assert "reused_checkpoint" in again.metrics and again.metrics["test_last_epoch"] == last
        # a reused checkpoint says which code trained it
        assert again.metrics["trained_commit"] == r.metrics["trained_commit"] != ""
