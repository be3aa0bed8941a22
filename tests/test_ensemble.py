"""Seed ensembles and temperature scaling served as one checkpoint by Predictor, transparently to every caller."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pneumolib.analysis.adapt import EARLY_BN_LAYERS, bn_layers
from pneumolib.cli import main
from pneumolib.data.dataset import discover
from pneumolib.models.checkpoint import Predictor, save_checkpoint
from pneumolib.models.inference import predict_proba, probabilities, view_logits
from pneumolib.models.networks import Ensemble, build_model
from pneumolib.training.ensemble import build_ensemble, fit_temperature, nll, validation_overlap


def p_pneumonia(model, x, tta=False):
    """The served probability through the package's one inference path."""
    return torch.from_numpy(predict_proba(model, x, tta=tta))


def reference_p(model, x, tta=False):
    """Softmax of the model's own output (flip-averaged with tta), computed without pneumolib."""
    with torch.no_grad():
        p = torch.softmax(model.eval()(x), dim=1)[:, 1]
        return (p + torch.softmax(model(torch.flip(x, dims=[3])), dim=1)[:, 1]) / 2 if tta else p


def _net(seed: int, in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("resnet18", in_channels=in_channels).eval()


def test_ensemble_serves_the_mean_of_its_members_probabilities():
    a, b = _net(0), _net(1)
    x = torch.randn(3, 1, 64, 64)
    want = (reference_p(a, x) + reference_p(b, x)) / 2
    assert torch.allclose(p_pneumonia(Ensemble([a, b]).eval(), x), want, atol=1e-6)
    assert torch.allclose(reference_p(Ensemble([a, b]), x), want, atol=1e-6)  # the module's own output agrees
    # and with flip TTA, the mean over members and views
    want_tta = (reference_p(a, x, tta=True) + reference_p(b, x, tta=True)) / 2
    assert torch.allclose(p_pneumonia(Ensemble([a, b]).eval(), x, tta=True), want_tta, atol=1e-6)


def _apart() -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two networks whose logits differ in scale, so averaging logits and averaging probabilities disagree."""
    a, b = _net(0), _net(1)
    with torch.no_grad():
        b.fc.weight.mul_(40.0)
        b.fc.bias.add_(torch.tensor([2.0, -2.0]))
    return a, b


def test_logit_ensemble_serves_the_softmax_of_its_members_mean_logit_regression():
    """Regression: Ensemble(combine="logit") averaged logits only in forward(); every served number (view_outputs
    then probabilities: predict, evaluate, thresholds, the NLL its temperature was fitted on) averaged the
    members' softmax(logit / T), so the recipe's card said "logits averaged" of scores that were not."""
    a, b = _apart()
    x = torch.randn(4, 1, 64, 64)
    ens = Ensemble([a, b], temperature=2.0, combine="logit").eval()
    with torch.no_grad():
        want = torch.softmax((a(x) + b(x)) / 2 / 2.0, dim=1)[:, 1]
        prob_mean = (torch.softmax(a(x) / 2.0, 1)[:, 1] + torch.softmax(b(x) / 2.0, 1)[:, 1]) / 2
    assert not torch.allclose(want, prob_mean, atol=1e-3)  # the two combinations differ on these inputs
    assert torch.allclose(p_pneumonia(ens, x), want, atol=1e-6)
    assert torch.allclose(reference_p(ens, x), want, atol=1e-6)  # the module's own output agrees
    assert torch.allclose(p_pneumonia(ens, x, tta=True), reference_p(ens, x, tta=True), atol=1e-6)
    logits = view_logits(ens, x)  # members kept apart in the pass: the combination is applied after it
    assert torch.allclose(torch.from_numpy(probabilities(logits, combine="logit")), want, atol=1e-6)
    with pytest.raises(ValueError, match="unknown combination"):
        probabilities(logits, combine="median")


def test_logit_ensemble_fits_its_temperature_on_the_scores_it_serves(trained_run, fixture_data, tmp_path):
    """build_ensemble(combine="logit"): the validation NLL it records is that of the probabilities its checkpoint
    then serves on the same films, so the temperature was fitted on them."""
    first = trained_run.run_dir / "checkpoint.pt"
    other = Predictor.load(first)
    with torch.no_grad():
        other.model.fc.weight.mul_(5.0)
    second = save_checkpoint(tmp_path / "other.pt", other.model, other.config, other.threshold, other.extra)
    pred = build_ensemble([first, second], fixture_data["val"], combine="logit")
    rec = pred.extra["ensemble"]
    x = torch.stack([pred.preprocess(s.path) for s in fixture_data["val"]])
    served = pred.predict_proba(x)
    labels = np.array([s.label for s in fixture_data["val"]])
    p = np.clip(served, 1e-7, 1 - 1e-7)
    served_nll = float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))
    assert rec["combine"] == "logit"
    assert rec["val"]["nll_after"] == pytest.approx(served_nll, abs=1e-5)


def test_temperature_divides_the_logits_of_a_single_member():
    a = _net(0)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        want = torch.softmax(a(x) / 3.0, dim=1)[:, 1]
    assert torch.allclose(p_pneumonia(Ensemble([a], temperature=3.0).eval(), x), want, atol=1e-6)


def test_ensemble_checkpoint_round_trip_gives_the_same_scores(trained_run, tmp_path):
    cfg = trained_run.predictor.config
    ens = Ensemble([_net(0, 3), _net(1, 3)], temperature=1.7).eval()
    path = save_checkpoint(tmp_path / "ens.pt", ens, cfg, 0.42)
    loaded = Predictor.load(path)
    assert isinstance(loaded.model, Ensemble) and float(loaded.model.temperature) == pytest.approx(1.7)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    assert np.allclose(loaded.predict_proba(x), reference_p(ens, x, cfg.tta).numpy(), atol=1e-6)
    assert loaded.threshold == pytest.approx(0.42)


def test_fit_temperature_recovers_a_known_overconfidence():
    # labels drawn from calibrated logits; the model reports them 4x too large: the fitted T must be about 4
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 1.5, 20000)
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(int)
    logits = torch.tensor(np.stack([np.zeros_like(z), 4.0 * z], axis=1), dtype=torch.float32)[None, None]
    t = fit_temperature(logits, y)
    assert 3.4 < t < 4.7
    assert nll(logits, y, t) < nll(logits, y, 1.0) - 0.1


def test_temperature_scaling_changes_confidence_not_ranking():
    rng = np.random.default_rng(1)
    logits = torch.tensor(rng.normal(0, 3, (1, 2, 300, 2)), dtype=torch.float32)
    y = rng.integers(0, 2, 300)
    # two members: the rank of the mean can change with T in principle, but one member's cannot
    one = logits[:, :1]
    assert roc_auc_score(y, probabilities(one, 1.0)) == pytest.approx(roc_auc_score(y, probabilities(one, 5.0)))


def test_build_ensemble_fits_on_validation_and_never_worsens_its_nll(trained_run, fixture_data):
    ckpt = trained_run.run_dir / "checkpoint.pt"
    pred = build_ensemble([ckpt], fixture_data["val"], temperature=True)
    rec = pred.extra["ensemble"]
    assert rec["val"]["nll_after"] <= rec["val"]["nll_before"] + 1e-9
    assert rec["temperature"] == pytest.approx(float(pred.model.temperature))
    # the served probabilities are exactly the ones the threshold was chosen on: the fitted model's logits already
    # carry its temperature (view_outputs divides by it), so they are not divided by it a second time
    # a one-member ensemble is its member: the member's own figures are the ensemble's before and after
    (member,) = rec["members_val"]
    assert member["nll"] == pytest.approx(rec["val"]["nll_before"], abs=1e-6)
    assert member["nll_tempered"] == pytest.approx(rec["val"]["nll_after"], abs=1e-6)
    assert member["ece_tempered"] == pytest.approx(rec["val"]["ece_after"], abs=1e-6)
    logits = view_logits(pred.model, fixture_data["val"], pred.preprocessing, tta=pred.config.tta)
    served = Predictor(pred.model, pred.config, pred.threshold, pred.preprocessing)
    x = torch.stack([served.preprocess(s.path) for s in fixture_data["val"][:4]])
    assert np.allclose(served.predict_proba(x), probabilities(logits)[:4], atol=1e-5)


def test_served_ensemble_probabilities_are_the_temperature_scaled_ones_on_any_machine_regression(
    trained_run, fixture_data
):
    """Regression: the check above divided the served model's logits by the temperature twice, so it passed only
    where training happened to reach a temperature near 1 (another CPU: 0.0052 served against 0.0080). Here the
    temperature is forced far from 1: the served path must equal the members' logits / T, once."""
    ckpt = trained_run.run_dir / "checkpoint.pt"
    pred = build_ensemble([ckpt], fixture_data["val"], temperature=False)
    raw = view_logits(pred.model, fixture_data["val"][:4], pred.preprocessing, tta=pred.config.tta)
    pred.model.temperature.fill_(3.0)
    served = Predictor(pred.model, pred.config, pred.threshold, pred.preprocessing)
    x = torch.stack([served.preprocess(s.path) for s in fixture_data["val"][:4]])
    assert np.allclose(served.predict_proba(x), probabilities(raw, 3.0), atol=1e-5)
    assert not np.allclose(probabilities(raw, 3.0), probabilities(raw, 9.0), atol=1e-5)  # T matters here


def test_adabn_reaches_every_member_of_an_ensemble_regression():
    # bn_layers matched on the first name part, which is 'members' for an ensemble: AdaBN adapted nothing
    single = bn_layers(_net(0), EARLY_BN_LAYERS)
    both = bn_layers(Ensemble([_net(0), _net(1)]), EARLY_BN_LAYERS)
    assert len(single) > 0 and len(both) == 2 * len(single)


def test_gradcam_of_an_ensemble_averages_its_members_maps(trained_run):
    # two different members: the ensemble's map is the mean of the map read at each member's block (both taken
    # from the gradient of the ensemble's own output, the log-odds its predictions are made from)
    import copy

    from pneumolib.analysis.cam import CAM, class_targets
    from pneumolib.models.networks import stage_blocks

    model = trained_run.predictor.model
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    ens = Ensemble([copy.deepcopy(model), other]).eval()
    x = torch.stack([trained_run.predictor.preprocess(s.path) for s in trained_run.explanation.samples[:3]])
    blocks, targets = stage_blocks(ens, "layer3"), class_targets([1, 1, 1])
    with CAM(ens, "gradcam", blocks) as cam:
        both = cam(x, targets)
    each = []
    for block in blocks:
        with CAM(ens, "gradcam", block) as cam:
            each.append(cam(x, targets))
    assert not np.allclose(each[0], each[1], atol=1e-4)  # the members differ, so the test can tell them apart
    assert np.allclose(both, (each[0] + each[1]) / 2, atol=1e-5)


def test_ensemble_applies_its_members_holdout_regression(trained_run, tmp_path, capsys):
    # regression: members trained with --holdout early_ids were scored on the folders' test split, which holds
    # their own training films
    from pneumolib.data.dataset import prepare
    from pneumolib.data.fixture import fixture_dir

    cfg, model, thr = trained_run.predictor.config, trained_run.predictor.model, trained_run.predictor.threshold
    members = [
        save_checkpoint(tmp_path / f"m{i}.pt", model, replace(cfg, seed=0), thr, {"holdout": "early_ids"})
        for i in range(2)
    ]
    js = tmp_path / "e.json"
    assert main(["ensemble", *map(str, members), "--out", str(tmp_path / "e.pt"), "--json", str(js)]) == 0
    assert "early_ids holdout" in capsys.readouterr().out
    early = prepare(fixture_dir(), seed=0, holdout="early_ids", image_size=cfg.image_size)["test"]
    folders = prepare(fixture_dir(), seed=0, image_size=cfg.image_size)["test"]
    rec = json.loads(js.read_text())
    assert rec["holdout"] == "early_ids" and rec["test"]["n"] == len(early) != len(folders)
    mixed = save_checkpoint(tmp_path / "f.pt", model, cfg, thr, {"holdout": "folders"})
    assert main(["ensemble", str(members[0]), str(mixed), "--out", str(tmp_path / "x.pt")]) == 2
    assert "different holdouts" in capsys.readouterr().err


def test_cli_ensemble_writes_a_checkpoint_that_evaluate_serves(trained_run, tmp_path, capsys):
    from pneumolib.data.fixture import fixture_dir

    out, js, ev = tmp_path / "ens" / "ens.pt", tmp_path / "ens.json", tmp_path / "ev.json"
    assert (
        main(
            [
                "ensemble",
                str(trained_run.run_dir),
                str(trained_run.run_dir / "checkpoint.pt"),
                "--out",
                str(out),
                "--json",
                str(js),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "2 member(s)" in text and "temperature" in text and "ECE" in text
    rec = json.loads(js.read_text())
    assert rec["test"]["n"] == len(trained_run.test.samples) and "ece" in rec["test"]
    # evaluate loads the combined checkpoint and serves it: the same test metrics as the ensemble command printed
    assert main(["evaluate", str(out), "--data-dir", str(fixture_dir()), "--json", str(ev)]) == 0
    got = json.loads(ev.read_text())
    assert got["n"] == rec["test"]["n"] and got["auc"] == pytest.approx(rec["test"]["auc"], abs=1e-9)
    assert got["accuracy"] == pytest.approx(rec["test"]["accuracy"], abs=1e-9)
    capsys.readouterr()


def test_cli_ensemble_refuses_members_with_other_preprocessing(trained_run, tmp_path, capsys):
    cfg = trained_run.predictor.config
    other = save_checkpoint(tmp_path / "other.pt", _net(0, 3), replace(cfg, image_size=cfg.image_size * 2), 0.5)
    assert main(["ensemble", str(trained_run.run_dir), str(other), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other.pt" in err[0] and "preprocessing" in err[0]
    assert not (tmp_path / "x.pt").exists()


def test_ensemble_of_seeds_says_its_validation_split_holds_other_members_training_films(trained_run, tmp_path, capsys):
    import shutil

    from pneumolib.data.fixture import fixture_dir

    data_root = shutil.copytree(fixture_dir(), tmp_path / "chest_xray")
    shutil.rmtree(data_root / "val")  # no val/ folder: each seed builds its own val split from the pooled films
    cfg = trained_run.predictor.config
    other = save_checkpoint(
        tmp_path / "seed7.pt", trained_run.predictor.model, replace(cfg, seed=7), trained_run.predictor.threshold
    )
    first = save_checkpoint(
        tmp_path / "seed0.pt", trained_run.predictor.model, replace(cfg, seed=0), trained_run.predictor.threshold
    )
    val0 = discover(data_root, seed=0)["val"]
    overlap = validation_overlap(
        val0, {7: discover(data_root, seed=7)["train"], 0: discover(data_root, seed=0)["train"]}
    )
    assert overlap[0] == 0 and overlap[7] > 0
    js = tmp_path / "e.json"
    assert (
        main(
            [
                "ensemble",
                str(first),
                str(other),
                "--data-dir",
                str(data_root),
                "--out",
                str(tmp_path / "e.pt"),
                "--json",
                str(js),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"seed 7 trained on {overlap[7]} of the" in out and "optimistic" in out
    assert json.loads(js.read_text())["val_films_trained_on"] == {"7": overlap[7]}


def test_a_seed_ensemble_adopts_a_member_another_ensemble_seed_trained_regression(tmp_path):
    # the recipe's ensembles S = 0..4 train members S..S+2 on one split (the data's own validation folder): member 2
    # was trained three times over, the same network each time (same data fingerprint, same test figures)
    from pneumolib.studies.catalogue import get_config
    from pneumolib.studies.experiment import resolve_config
    from pneumolib.studies.run_config import sibling_member

    ens, _ = resolve_config(replace(get_config("recommended"), seed=0), "fixture", None, "random_init")
    member = replace(ens, members=1, seed=2)
    done = tmp_path / "10_recommended" / "seed0" / "members" / "seed2"
    net = build_model(in_channels=member.in_channels)
    save_checkpoint(done / "checkpoint.pt", net, member, 0.5, {"holdout": "folders", "data_fingerprint": "fp-A"})
    (done / "metrics.json").write_text("{}")
    out = tmp_path / "10_recommended" / "seed2" / "members" / "seed2"
    assert sibling_member(out, member, "folders", "fp-B") is None and not out.exists()  # another split: trained
    assert sibling_member(out, member, "folders", "fp-A") == done
    assert (out / "checkpoint.pt").read_bytes() == (done / "checkpoint.pt").read_bytes()
    other = tmp_path / "10_recommended" / "seed2" / "members" / "seed3"  # no sibling of that seed: trained
    assert sibling_member(other, replace(member, seed=3), "folders", "fp-A") is None


def test_an_ensemble_members_runner_adopts_the_sibling_before_it_runs_the_member(tmp_path, monkeypatch):
    # the wiring of the fix above: the runner train_members calls starts the member's folder from another ensemble
    # seed's member of the same training before run_experiment sees it, so run_experiment reuses instead of training
    from pneumolib.studies import experiment as E
    from pneumolib.studies.catalogue import get_config

    ens, _ = E.resolve_config(replace(get_config("recommended"), seed=0), "fixture", None, "random_init")
    member = replace(ens, members=1, seed=2)
    done = tmp_path / "10_recommended" / "seed0" / "members" / "seed2"
    net = build_model(in_channels=member.in_channels)
    save_checkpoint(done / "checkpoint.pt", net, member, 0.5, {"holdout": "folders", "data_fingerprint": "fp-A"})
    (done / "metrics.json").write_text("{}")
    seen = []
    monkeypatch.setattr(
        E, "run_experiment", lambda cfg, src, out, settings: seen.append((out / "checkpoint.pt").is_file())
    )
    runner = E._member_runner(None, E.RunSettings(holdout="folders"), None, "fp-A")
    runner(member, tmp_path / "10_recommended" / "seed2" / "members" / "seed2")
    runner(replace(member, seed=3), tmp_path / "10_recommended" / "seed2" / "members" / "seed3")
    assert seen == [True, False]  # seed 2 adopted from ensemble 0; seed 3 has no sibling: trained
