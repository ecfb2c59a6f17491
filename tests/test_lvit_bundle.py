# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""LViT bundle specifics on top of the shared bundle tests: semi-supervised EPI + LV training end to end, resume
of the pseudo-label bank, the text-free LViT-xW switch and the config checks."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigWorkflow

from test_bundles import configs, tiny_overrides

NAME = "lvit"


def _workflow(tmp_path, **extra):
    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", **extra)
    wf = ConfigWorkflow(config_file=configs(NAME, "train.json")[0], workflow_type="train", **over)
    wf.initialize()
    return wf


def test_semi_supervised_epoch_runs_and_bank_resumes(tmp_path):
    # default batches after the warm-up: 4 labeled + 4 unlabeled (unlabeled_per_batch = batch_size), two batches per
    # epoch, so each of the 4 unlabeled images is drawn twice per epoch; plain eq. 9 (no bias correction) so that the
    # size of an EMA step is bounded below
    wf = _workflow(tmp_path, label_fraction=0.5, max_epochs=2, epi_bias_correction=False)
    labeled, unlabeled = wf.parser.get_parsed_content("train#split")
    assert len(labeled) == 4 and len(unlabeled) == 4, "half of the 8 training images keep their labels"
    unlabeled_data = wf.parser.get_parsed_content("train#unlabeled_data")
    assert all("label" not in u and u["contrastive_label"] for u in unlabeled_data)
    assert {u["contrastive_label"] for u in unlabeled_data} <= {item["label"] for item in labeled}
    wf.run()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert {"loss_dice", "loss_ce", "loss_lv"} <= set(trainer.state.metrics), trainer.state.metrics
    assert trainer.state.metrics["loss_lv"] > 0, "the LV loss acts on the unlabeled images"
    bank = wf.parser.get_parsed_content("epi_bank")
    assert bool(bank.state_dict()["initialised"].all()), "every unlabeled image has a pseudo label after an epoch"
    saved = torch.load(tmp_path / "out" / "models" / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert torch.equal(saved["epi_bank"]["values"], bank.state_dict()["values"])

    resumed = _workflow(tmp_path, label_fraction=0.5, max_epochs=3, resume=True, epi_bias_correction=False)
    r_bank = resumed.parser.get_parsed_content("epi_bank")
    before = saved["epi_bank"]["values"].float()
    resumed.run()
    after = r_bank.state_dict()["values"].float()
    assert r_bank.state_dict()["counts"].tolist() == [c + 2 for c in saved["epi_bank"]["counts"].tolist()]
    # the EMA continued from the saved bank (beta = 0.99): values moved, but by at most 1 - beta**2 in two updates
    assert 0 < (after - before).abs().max() <= 1 - 0.99**2 + 1e-3


def test_text_free_variant_and_bad_keys(tmp_path):
    wf = _workflow(tmp_path, use_text=False, max_epochs=1)
    net = wf.parser.get_parsed_content("network_def")
    assert net.use_text is False and net.text_embedder is None
    with pytest.raises(Exception) as err:
        _workflow(tmp_path, text_encoder="gpt")
    assert "text_encoder" in str(err.value) + str(err.value.__cause__)
    with pytest.raises(Exception) as err:
        _workflow(tmp_path, model_size="XL")
    assert "model_size" in str(err.value) + str(err.value.__cause__)


def test_frozen_bert_text_encoder_path(tmp_path):
    """The paper setting: frozen BERT-family word vectors, cached, fed as (num_tokens, hidden) embeddings. A tiny
    random BERT is saved to a folder and loaded through the bundle's own keys, as a user points at a real model."""
    from conftest import save_tiny_bert

    folder = save_tiny_bert(tmp_path / "tiny_bert", intermediate_size=32)

    wf = _workflow(tmp_path, text_encoder="bert", text_encoder_path=str(folder), text_dim=16, max_epochs=1)
    assert wf.parser.get_parsed_content("text_key") == "text_emb"
    assert wf.parser.get_parsed_content("network_def").text_embedder is None
    wf.run()
    assert wf.parser.get_parsed_content("train#trainer").state.epoch == 1
    cache_files = list((tmp_path / "out" / "text_cache").glob("*.pt"))
    assert len(cache_files) == 1, "frozen text embeddings are cached on disk, one file per model and token count"


def test_multi_gpu_refuses_semi_supervised(tmp_path):
    over = tiny_overrides(NAME, tmp_path / "data", tmp_path / "out", label_fraction=0.5)
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(NAME, "train.json", "multi_gpu_train.json"))
    parser.update(over)
    # the check's position in the list changes when other start-up steps are added: find it by its content
    index = next(i for i, step in enumerate(parser["initialize"]) if "label_fraction == 1.0" in str(step))
    with pytest.raises(Exception) as err:
        parser.get_parsed_content(f"initialize#{index}")
    assert "one process" in str(err.value) + str(err.value.__cause__)


def test_training_notes_vocabulary_travels_to_evaluation_inference_and_export(tmp_path):
    """The offline default: a word vocabulary and token count drawn from the training notes (``num_tokens`` 0),
    written beside ``model.pt`` and read back by evaluation, inference and export without the training datalist."""
    import json

    from monai.bundle import ConfigParser, ckpt_export

    from common.data import datalist_texts
    from common.transforms import WordVocabTokenizer, split_words
    from test_bundles import bundle_dir, run_workflow

    derived = ("num_tokens", "text_length", "text_vocab_size")  # the tiny test settings fix them; here they are free
    over = {k: v for k, v in tiny_overrides(NAME, tmp_path / "data", tmp_path / "out").items() if k not in derived}
    over["max_epochs"] = 1
    wf = run_workflow(NAME, configs(NAME, "train.json"), "train", over)
    ckpt_dir = tmp_path / "out" / "models"
    saved = json.loads((ckpt_dir / "text_tokenizer.json").read_text())
    training_notes = datalist_texts(str(tmp_path / "data" / "datalist.json"), ["training"])
    expected = WordVocabTokenizer.from_texts(training_notes)
    assert saved["kind"] == "words" and saved["tokens"] == expected.tokens
    longest = max(len(split_words(t)) for t in training_notes)
    assert saved["context_length"] == longest
    net = wf.parser.get_parsed_content("network_def")
    assert net.num_tokens == longest and net.text_embedder.vocab_size == len(expected.tokens) < 40
    assert wf.parser.get_parsed_content("train#dataset")[0]["text_ids"].shape == (longest,)

    # evaluation reads the saved file (it does not rebuild the vocabulary from the datalist)
    eval_parser = ConfigParser()
    eval_parser.read_config(configs(NAME, "train.json", "evaluate.json"))
    eval_parser.update(over)
    assert eval_parser.get_parsed_content("tokenizer").tokens == expected.tokens

    # inference on a folder with a prompt holding a word the training notes never used: <unk>, reported
    folder = tmp_path / "folder"
    folder.mkdir()
    first = json.loads((tmp_path / "data" / "datalist.json").read_text())["test"][0]["image"]
    (folder / "case.png").write_bytes((tmp_path / "data" / first).read_bytes())
    inf_over = {k: v for k, v in over.items() if k not in ("max_epochs",)}
    inf_over.update(
        ckpt_path=str(ckpt_dir / "model.pt"),
        input_dir=str(folder),
        output_dir=str(tmp_path / "pred"),
        text_prompt="Unilateral pulmonary infection, one infected area, hilar left lung.",
    )
    inf = run_workflow(NAME, configs(NAME, "inference.json"), "infer", inf_over)
    assert (tmp_path / "pred" / "case_mask.png").is_file()
    # counted (and logged once: tests/test_transforms_text.py checks the warning; logging.conf owns the handlers here)
    assert inf.parser.get_parsed_content("tokenizer").unknown_words == {"hilar": 1}

    # TorchScript export from the inference config alone, equal to the eager model on tokenised notes
    ts_path = tmp_path / "model.ts"
    export_over = {k: v for k, v in inf_over.items() if k != "bundle_root"}
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(ckpt_dir / "model.pt"),
        meta_file=str(bundle_dir(NAME) / "configs" / "metadata.json"),
        config_file=configs(NAME, "inference.json")[0],
        bundle_root=str(bundle_dir(NAME)),
        args_file=None,
        **export_over,
    )
    ids = expected(training_notes[:2]).ids
    image = torch.rand(2, 3, over["image_size"], over["image_size"])
    net.eval()
    with torch.no_grad():
        diff = (torch.jit.load(str(ts_path))(image, ids) - net(image, ids)).abs().max().item()
    assert diff < 1e-5

    # without the file beside model.pt, evaluation and inference stop with a message naming it
    (ckpt_dir / "text_tokenizer.json").unlink()
    for files in (configs(NAME, "train.json", "evaluate.json"), configs(NAME, "inference.json")):
        parser = ConfigParser()
        parser.read_config(files)
        parser.update(inf_over)
        with pytest.raises(Exception) as err:
            parser.get_parsed_content("network_def")
        assert "text_tokenizer.json" in str(err.value) + str(err.value.__cause__)
