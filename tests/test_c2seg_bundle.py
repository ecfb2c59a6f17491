# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""C2Seg bundle specifics on top of the shared bundle tests (tests/test_bundles.py): stage I (configs/pretrain.json)
then stage II (configs/train.json) from its checkpoint, the missing-checkpoint error, the encoder's smaller learning
rate, the frozen text encoder, and the keys of the Table 3 / 4 rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from conftest import REPO_ROOT
from test_bundles import bundle_dir, configs, run_workflow, tiny_overrides

NAME = "c2seg"


def _parser(tmp_path, files=("train.json",), **extra) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(configs(NAME, *files))
    parser.update(tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", **extra))
    return parser


def _stage1_file(tmp_path, name="stage1_model.pt", **extra):
    """A stage I checkpoint in the layout pretrain.json writes (``{"network": state_dict}``), without training."""
    net = _parser(tmp_path, ("pretrain.json",), **extra).get_parsed_content("network_def")
    path = tmp_path / name
    torch.save({"network": net.state_dict()}, path)
    return path, net.state_dict()


def test_stage1_then_stage2_from_its_checkpoint(tmp_path):
    """Stage I trains and writes its checkpoint; stage II built with `pretrained_encoder` holds exactly its encoder
    weights, trains the encoder, and leaves the frozen text encoder untouched."""
    data = tmp_path / "data"
    stage1_out = tmp_path / "stage1"
    run_workflow(NAME, configs(NAME, "pretrain.json"), "train", tiny_overrides(NAME, data, stage1_out, max_epochs=1))
    ckpt = stage1_out / "models" / "stage1_model.pt"
    assert ckpt.is_file() and (stage1_out / "models" / "stage1_checkpoint_last.pt").is_file()
    stage1 = torch.load(ckpt, map_location="cpu", weights_only=True)["network"]
    encoder_keys = [k for k in stage1 if k.startswith("encoder.")]
    assert encoder_keys and any(k.startswith("image_projection.") for k in stage1)

    net = _parser(tmp_path, pretrained_encoder=str(ckpt)).get_parsed_content("network_def")
    own = net.encoder.state_dict()
    assert sorted("encoder." + k for k in own) == sorted(encoder_keys)
    for k, v in own.items():
        assert torch.equal(v, stage1["encoder." + k]), k
    fresh = _parser(tmp_path).get_parsed_content("network_def").encoder.state_dict()
    assert not all(torch.equal(fresh[k], own[k]) for k in own), "a fresh encoder equals the loaded one"

    over = tiny_overrides(NAME, data, tmp_path / "stage2", max_epochs=1, pretrained_encoder=str(ckpt))
    wf = ConfigWorkflow(config_file=configs(NAME, "train.json")[0], workflow_type="train", **over)
    wf.initialize()
    network = wf.parser.get_parsed_content("network")
    text_before = {k: v.clone() for k, v in network.text_encoder.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in network.encoder.state_dict().items()}
    assert all(torch.equal(encoder_before[k], stage1["encoder." + k]) for k in encoder_before)
    assert not any(p.requires_grad for p in network.text_encoder.parameters())
    wf.run()
    wf.finalize()
    assert all(torch.equal(v, text_before[k]) for k, v in network.text_encoder.state_dict().items())
    changed = [k for k, v in network.encoder.state_dict().items() if not torch.equal(v, encoder_before[k])]
    assert changed, "stage II did not fine-tune the encoder"
    assert (tmp_path / "stage2" / "models" / "model.pt").is_file()


def test_missing_stage1_checkpoint_is_a_clear_error_with_exit_status_1(tmp_path):
    absent = tmp_path / "no_such_stage1_model.pt"
    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", pretrained_encoder=str(absent))
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs(NAME, "train.json")[0]]
    for k, v in over.items():
        cmd += [f"--{k}", repr(v) if not isinstance(v, str) else v]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    tail = "\n".join(proc.stderr.strip().splitlines()[-4:])
    assert "FileNotFoundError" in tail and "`pretrained_encoder`" in tail and str(absent) in tail, tail
    assert "Aborted" not in proc.stderr and "terminate called" not in proc.stderr
    assert not (tmp_path / "data").exists(), "the check must run before the data are generated"


def test_stage1_checkpoint_of_another_encoder_is_refused(tmp_path):
    path, _ = _stage1_file(tmp_path, channels=[4, 8, 8, 16, 32])
    with pytest.raises(Exception) as err:
        _parser(tmp_path, pretrained_encoder=str(path)).get_parsed_content("network_def")
    text = str(err.value) + str(err.value.__cause__)
    assert str(path) in text and "do not fit" in text


def test_encoder_learning_rate_group_is_smaller_and_text_encoder_is_not_optimised(tmp_path):
    path, _ = _stage1_file(tmp_path)
    parser = _parser(tmp_path, pretrained_encoder=str(path))
    net = parser.get_parsed_content("network_def")
    optimizer = parser.get_parsed_content("optimizer")
    lr = parser.get_parsed_content("learning_rate")
    encoder_ids = {id(p) for p in net.encoder.parameters()}
    groups = {frozenset(id(p) for p in g["params"]): g["lr"] for g in optimizer.param_groups}
    assert groups[frozenset(encoder_ids)] == pytest.approx(lr * 0.1)
    (rest,) = [ids for ids in groups if ids != frozenset(encoder_ids)]
    assert groups[rest] == pytest.approx(lr)
    text_ids = {id(p) for p in net.text_encoder.parameters()}
    assert text_ids and not text_ids & set().union(*groups), "the frozen text encoder is in the optimizer"
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert set().union(*groups) == trainable
    # without stage I the encoder starts from random weights and gets the main rate; the key still sets it
    groups = [g["lr"] for g in _parser(tmp_path).get_parsed_content("optimizer").param_groups]
    assert groups == [pytest.approx(lr)] * 2
    groups = [g["lr"] for g in _parser(tmp_path, encoder_lr_scale=0.5).get_parsed_content("optimizer").param_groups]
    assert sorted(groups) == [pytest.approx(lr * 0.5), pytest.approx(lr)]


ROWS = {  # Table 3 rows a-d and Table 4a, as the README's key-set table lists them
    "3a": {"fusion": "none"},
    "3b": {"fusion": "duala", "gate": "none"},
    "3c": {"fusion": "bcam", "gate": "none"},
    "3d": {"fusion": "bcam", "gate": "kgate"},
    "4a_cnn": {"encoder": "cnn"},
    "4a_kan": {"encoder": "kan"},
    "4a_bcam_linear": {"fusion": "bcam_linear"},
    "4a_kgate_mlp": {"gate": "mlp"},
}


@pytest.mark.parametrize("row", sorted(ROWS))
def test_table_rows_are_reachable_by_keys(row, tmp_path):
    from common.networks.c2seg_blocks import BCAM, DualAttention

    keys = ROWS[row]
    net = _parser(tmp_path, **keys).get_parsed_content("network_def")
    fusion, gate = keys.get("fusion", "bcam"), keys.get("gate", "kgate")
    assert net.encoder.kind == keys.get("encoder", "hybrid")
    if fusion == "none":
        assert net.text_encoder is None and len(net.fusions) == 0
    else:
        assert [f.level for f in net.fusions] == [2, 3, 4]
        block = net.fusions[0].fusion
        assert isinstance(block.attention, DualAttention if fusion == "duala" else BCAM)
        assert block.gate.gated == (gate != "none")
        if gate != "none":
            layer = type(block.gate.vision_gate.layer1).__name__
            assert layer == ("KANLinear" if gate == "kgate" else "Linear"), layer
    out = net(torch.rand(2, 3, 32, 32), torch.randint(0, 49407, (2, 24)))
    assert out.shape == (2, 1, 32, 32)


def test_stage1_keys_reach_the_loss_and_the_batch(tmp_path):
    parser = _parser(tmp_path, ("pretrain.json",), hard=True, tau=0.05, rho=0.6)
    loss = parser.get_parsed_content("loss")
    assert (loss.hard, loss.tau, loss.rho) == (True, 0.05, 0.6)
    raw = ConfigParser()
    raw.read_config(configs(NAME, "pretrain.json"))
    assert raw.get_parsed_content("batch_size") == 256  # paper, section 4.1
    raw.update({"preset": "offline_small"})
    assert raw.get_parsed_content("batch_size") == 32  # the small-machine preset


def test_presets_agree_between_stages_and_inference():
    files = {f: json.loads((bundle_dir(NAME) / "configs" / f).read_text()) for f in ("train.json", "pretrain.json")}
    inference = json.loads((bundle_dir(NAME) / "configs" / "inference.json").read_text())
    for name, preset in files["train.json"]["presets"].items():
        stage1 = files["pretrain.json"]["presets"][name]
        assert {k: stage1[k] for k in preset} == preset
        assert {k: preset[k] for k in inference["presets"][name]} == inference["presets"][name]
    for key in ("num_tokens", "channels", "encoder", "grid_size", "spline_order", "clip_weights"):
        assert files["pretrain.json"][key] == files["train.json"][key], key
    for key in ("num_tokens", "channels", "encoder", "fusion", "gate", "fusion_scales", "token_mask", "residual"):
        assert inference[key] == files["train.json"][key], key


def test_bert_text_encoder_from_a_local_folder_rows_g_h(tmp_path):
    """Table 3 rows g, h: a BERT-family encoder (BioBERT, PubMedBERT) from a local folder through the bundle's keys;
    a tiny random BERT stands in, saved as a user's model folder would be."""
    from conftest import TINY_BERT_VOCAB, save_tiny_bert

    from common.networks.c2seg import HFTokenTextEncoder

    folder = save_tiny_bert(tmp_path / "tiny_bert")

    parser = _parser(tmp_path, text_model="hf", hf_text_path=str(folder))
    assert parser.get_parsed_content("clip") is None and parser.get_parsed_content("token_mask") == "nonzero"
    net = parser.get_parsed_content("network_def").eval()
    assert isinstance(net.text_encoder.encoder, HFTokenTextEncoder) and net.embed_dim == 16
    ids = parser.get_parsed_content("tokenizer")(
        ["Unilateral pulmonary infection, one infected area, lower left lung."]
    )
    assert ids.ids.shape == (1, 24) and int(ids.ids[0, 0]) == TINY_BERT_VOCAB.index("[CLS]")
    assert net(torch.rand(1, 3, 32, 32), ids.ids).shape == (1, 1, 32, 32)
    stage1 = _parser(tmp_path, ("pretrain.json",), text_model="hf", hf_text_path=str(folder))
    assert stage1.get_parsed_content("network_def").embed_dim == 16


def test_benchmark_times_stage1_from_pretrain_json(tmp_path):
    """tools/benchmark.py --network_config/--train_config/--override: the stage I network with CaCL and its
    optimizer, as the README's stage I step time is measured (tiny sizes here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tools_benchmark", REPO_ROOT / "tools" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    tiny = tiny_overrides(NAME, tmp_path, tmp_path)
    overrides = [f"{k}={tiny[k]}" for k in ("clip_model", "channels")] + ["clip_pretrained=False"]
    args = ["bundles/c2seg", "--network_config", "pretrain.json", "--train_config", "pretrain.json", "--device", "cpu"]
    args += ["--batch_sizes", "4", "--repeats", "1", "--warmup", "0", "--image_size", "32", "--threads", "1"]
    args += ["--out", str(tmp_path / "bench.json")] + [a for o in overrides for a in ("--override", o)]
    assert benchmark.main(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert (
        report["training_setup"]["loss"] == "CaCLLoss"
        and report["training_setup"]["loss_source"] == "pretrain.json#loss"
    )
    assert report["settings"]["network_config"] == "pretrain.json"
    assert report["parameters"]["trainable"] < report["parameters"]["registered"]  # the frozen text encoder
    assert report["results"][0]["train_step"]["median_ms"] > 0
