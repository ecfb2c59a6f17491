# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""MCDRL components (arXiv 2508.05008): MTRS (eq. 6), the dense CLIP encoder, the causal intervention, the loss
(eq. 9-12), prompts encoded once, the progressive schedule and the class-index label transforms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine

from common.data.synthetic_text import LESION_CLASSES
from common.handlers import InterventionScheduleHandler
from common.losses import MCDRLLoss
from common.losses.mcdrl import image_classes_from_label
from common.networks import MCDRL, clip_dense_encoder, encode_mcdrl_prompts, load_clip
from common.networks.mcdrl_blocks import (
    DEFAULT_CONFOUNDERS,
    CausalInterventionNetwork,
    region_similarity,
    select_target_regions,
)
from common.transforms.class_map import BinaryFromClassIndexd, ClassIndexMapd, LesionProbabilityd
from conftest import REPO_ROOT

TINY_VIT = str(REPO_ROOT / "tests" / "fixtures" / "tiny_clip_vit.json")


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    return load_clip(TINY_VIT, allow_random_init=True)


def _network(clip_model, **kwargs) -> MCDRL:
    prompts = encode_mcdrl_prompts(clip_model, LESION_CLASSES)
    options = dict(intervention_layers=1, intervention_heads=2, head_channels=8)
    options.update(kwargs)
    return MCDRL(
        clip_dense_encoder(clip_model.visual),
        prompts["class"],
        prompts["confounder"],
        prompts["class_confounder"],
        **options,
    )


# ---------------------------------------------------------------- MTRS (section 4.1, eq. 6)


def test_mtrs_selects_the_locations_most_similar_to_any_class():
    """Hand-made map of 6 locations in 3-D, two class prompts along x and y: eq. 6 is a cosine (so scale does not
    matter), the max runs over classes, and the top alpha * L locations are kept."""
    e = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # e_0 along x, e_1 along y (norm 2: cosine ignores it)
    tokens = torch.tensor(
        [
            [
                [10.0, 0.0, 0.0],  # 0: class 0, cos 1 (large norm must not matter)
                [0.0, 0.0, 1.0],  # 1: orthogonal to both, cos 0
                [0.0, 0.1, 0.0],  # 2: class 1, cos 1 (small norm)
                [1.0, 0.0, 1.0],  # 3: cos 1/sqrt(2) with class 0
                [-1.0, -1.0, 0.0],  # 4: negative with both
                [0.0, 1.0, 3.0],  # 5: cos 1/sqrt(10) with class 1
            ]
        ]
    )
    scores = region_similarity(tokens, e)
    expected = torch.tensor([[1.0, 0.0, 1.0, 1 / math.sqrt(2), -1 / math.sqrt(2), 1 / math.sqrt(10)]])
    torch.testing.assert_close(scores, expected)
    assert set(select_target_regions(scores, 0.5)[0].tolist()) == {0, 2, 3}  # N = 0.5 * 6 = 3
    assert set(select_target_regions(scores, 0.4)[0].tolist()) == {0, 2}  # round(2.4) = 2
    assert set(select_target_regions(scores, 0.45)[0].tolist()) == {0, 2, 3}  # round(2.7) = 3
    assert select_target_regions(scores, 0.01)[0].tolist() in ([0], [2])  # at least one location
    assert select_target_regions(scores, 1.0).shape == (1, 6)


def test_mtrs_off_and_unselected_locations(clip_model):
    """What the head receives: the intervened rows at the selected locations; the original features
    (``unselected="features"``) or zeros (``"zeros"``) elsewhere; with ``mtrs=False`` every location is selected."""
    torch.manual_seed(1)
    image = torch.randn(2, 3, 32, 32)
    for unselected in ("features", "zeros"):
        net = _network(clip_model, alpha=0.25, unselected=unselected).eval()
        seen = {}
        net.head.register_forward_hook(lambda m, args, out: seen.update(grid=args[0]))
        with torch.no_grad():
            net(image)
            dense, _ = net.encoder(image)
        tokens = dense.flatten(2).transpose(1, 2)
        index = select_target_regions(region_similarity(tokens, net.class_embeddings), 0.25)
        grid = seen["grid"].flatten(2).transpose(1, 2)
        assert index.shape == (2, 4)  # 0.25 * 16 locations
        selected = torch.zeros(2, 16, dtype=torch.bool)
        selected.scatter_(1, index, True)
        outside = grid[~selected]
        want = tokens[~selected] if unselected == "features" else torch.zeros_like(outside)
        torch.testing.assert_close(outside, want)
        intervened = net.intervention(
            torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[2])), net.confounder_embeddings
        )
        torch.testing.assert_close(torch.gather(grid, 1, index.unsqueeze(-1).expand(-1, -1, grid.shape[2])), intervened)
    net = _network(clip_model, mtrs=False).train()
    out = net(image)
    with torch.no_grad():
        dense, _ = net.encoder(image)
        full = net.intervention(dense.flatten(2).transpose(1, 2), net.confounder_embeddings).mean(1)
    torch.testing.assert_close(out["pooled"], full, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- encoder and outputs


def test_vit_dense_encoder_class_token_is_clips_image_embedding(clip_model):
    """Every token goes through ln_post and proj: the class token is exactly CLIP's image embedding."""
    encoder = clip_dense_encoder(clip_model.visual).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        dense, image_feature = encoder(image)
        torch.testing.assert_close(image_feature, clip_model.visual(image))
    assert dense.shape == (2, 16, 4, 4)  # embed_dim 16, 32 / patch 8
    with torch.no_grad():
        assert encoder(torch.randn(1, 3, 48, 64))[0].shape == (1, 16, 6, 8)  # positional embedding resized
    with pytest.raises(ValueError, match="multiples of the ViT patch size 8"):
        encoder(torch.randn(1, 3, 30, 32))


def test_resnet_tower_is_selectable():
    rn = load_clip(str(REPO_ROOT / "tests" / "fixtures" / "tiny_clip_rn.json"), allow_random_init=True)
    encoder = clip_dense_encoder(rn.visual).eval()
    with torch.no_grad():
        dense, image_feature = encoder(torch.randn(1, 3, 64, 64))
    assert dense.shape[2:] == (2, 2) and image_feature.shape == (1, dense.shape[1]) and encoder.stride == 32


def test_outputs_classes_and_lesion_logit(clip_model):
    """K + 1 logits; the lesion output's sigmoid is 1 - P(background)."""
    net = _network(clip_model).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = net(image)
        net.lesion_output = True
        lesion = net(image)
    assert logits.shape == (2, len(LESION_CLASSES) + 1, 32, 32) and lesion.shape == (2, 1, 32, 32)
    torch.testing.assert_close(torch.sigmoid(lesion), 1 - logits.softmax(1)[:, :1], atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- prompts encoded once


def test_prompts_are_encoded_once_and_stored(clip_model, monkeypatch):
    calls = []
    original = clip_model.encode_text
    monkeypatch.setattr(clip_model, "encode_text", lambda ids, **kw: calls.append(ids.shape[0]) or original(ids))
    net = _network(clip_model).train()
    k, m = len(LESION_CLASSES), len(DEFAULT_CONFOUNDERS)
    assert calls == [k, m, k * m]  # e_k, Z, t_{k,m}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.class_embeddings.clone()
    for _ in range(2):
        out = net(torch.randn(2, 3, 32, 32))
        MCDRLLoss()(out, torch.randint(0, 2, (2, 1, 32, 32)).float()).backward()
        opt.step()
    net.eval()(torch.randn(1, 3, 32, 32))
    assert calls == [k, m, k * m], "the text encoder ran again after construction"
    torch.testing.assert_close(net.class_embeddings, before)  # buffers: not trained
    state = net.state_dict()
    for key in ("class_embeddings", "confounder_embeddings", "class_confounder_embeddings", "intervention_on"):
        assert key in state
    assert state["class_confounder_embeddings"].shape == (k, m, 16)
    assert not any("token_embedding" in key or "text" in key for key in state), "the network holds a text encoder"


def test_prompt_templates_and_confounder_count(clip_model):
    five = encode_mcdrl_prompts(clip_model, LESION_CLASSES, num_confounders=5)
    assert five["confounder"].shape == (5, 16) and five["class_confounder"].shape == (5, 5, 16)
    full = encode_mcdrl_prompts(clip_model, LESION_CLASSES)
    torch.testing.assert_close(five["confounder"], full["confounder"][:5])
    with pytest.raises(ValueError, match="num_confounders"):
        encode_mcdrl_prompts(clip_model, LESION_CLASSES, num_confounders=13)
    with pytest.raises(ValueError, match="class_confounder_template"):
        encode_mcdrl_prompts(clip_model, LESION_CLASSES, class_confounder_template="A {} lesion")


# ---------------------------------------------------------------- losses (eq. 9-12)


def _outputs(intervened=True):
    torch.manual_seed(3)
    return {
        "logits": torch.randn(3, 4, 5, 5, requires_grad=True),
        "pooled": torch.randn(3, 6, requires_grad=True),
        "class_similarity": torch.rand(3, 3) * 2 - 1,
        "causal_targets": torch.randn(3, 6),
        "intervened": torch.tensor(intervened),
    }


def _label():
    label = torch.zeros(3, 1, 5, 5)
    label[0, 0, 1:3, 1:3] = 3  # class 2
    label[1, 0, 0, 0] = 1  # class 0
    return label  # image 2: no lesion


def test_seg_loss_is_pixel_cross_entropy():
    out, label = _outputs(), _label()
    log_p = out["logits"].log_softmax(1)
    manual = -torch.stack(
        [log_p[b, int(label[b, 0, h, w]), h, w] for b in range(3) for h in range(5) for w in range(5)]
    ).mean()
    torch.testing.assert_close(MCDRLLoss().segmentation(out["logits"], label), manual)


def test_causal_loss_eq11():
    out, label = _outputs(), _label()
    classes = image_classes_from_label(label)
    assert classes.tolist() == [2, 0, -1]
    literal = MCDRLLoss(causal_normalize=False).causal(out["pooled"], out["causal_targets"], classes)
    manual = sum(float(((out["pooled"][b] - out["causal_targets"][k]) ** 2).sum()) for b, k in ((0, 2), (1, 0))) / 2
    assert float(literal) == pytest.approx(manual, rel=1e-6)
    normalised = MCDRLLoss().causal(out["pooled"], out["causal_targets"], classes)
    a, t = F.normalize(out["pooled"], dim=-1), F.normalize(out["causal_targets"], dim=-1)
    manual = sum(float(((a[b] - t[k]) ** 2).sum()) for b, k in ((0, 2), (1, 0))) / 2
    assert float(normalised) == pytest.approx(manual, rel=1e-6)
    cos = sum(
        float(F.cosine_similarity(out["pooled"][b], out["causal_targets"][k], dim=0)) for b, k in ((0, 2), (1, 0))
    )
    assert float(normalised) == pytest.approx(2 - cos, rel=1e-6)  # |a - b|^2 = 2 - 2 cos per image, averaged
    none = MCDRLLoss().causal(out["pooled"], out["causal_targets"], torch.tensor([-1, -1, -1]))
    assert float(none) == 0.0 and none.requires_grad


def test_contrast_loss_eq12():
    out, label = _outputs(), _label()
    sim, tau = out["class_similarity"], 0.5
    manual = 0.0
    for b, k in ((0, 2), (1, 0)):
        manual += -math.log(math.exp(sim[b, k] / tau) / sum(math.exp(sim[b, j] / tau) for j in range(3)))
    value = MCDRLLoss(tau=tau).contrast(sim, image_classes_from_label(label))
    assert float(value) == pytest.approx(manual / 2, rel=1e-6)
    assert float(MCDRLLoss(tau=1.0).contrast(sim, image_classes_from_label(label))) != pytest.approx(manual / 2)


def test_total_loss_eq9_weights_and_logged_terms():
    out, label = _outputs(), _label()
    loss = MCDRLLoss()  # lambda1 = 0.5, lambda2 = 0.1, tau = 0.5 (section 4.2.3)
    total = loss(out, label)
    classes = image_classes_from_label(label)
    seg = loss.segmentation(out["logits"], label)
    causal = loss.causal(out["pooled"], out["causal_targets"], classes)
    contrast = loss.contrast(out["class_similarity"], classes)
    torch.testing.assert_close(total, seg + 0.5 * causal + 0.1 * contrast)
    assert loss.last_terms == pytest.approx(
        {"seg": float(seg), "causal": 0.5 * float(causal), "contrast": 0.1 * float(contrast)}
    )
    off = loss(_outputs(intervened=False), label)  # before the progressive switch: no L_causal
    torch.testing.assert_close(off, seg + 0.1 * contrast)
    assert loss.last_terms["causal"] == 0.0


# ---------------------------------------------------------------- progressive schedule (section 5.1.3)


@pytest.mark.parametrize("cdrl", [True, False])
def test_schedule_switches_after_start_epoch(clip_model, cdrl):
    net = _network(clip_model, cdrl=cdrl).train()
    loss = MCDRLLoss()
    seen = []

    def step(engine, batch):
        out = net(batch)
        loss(out, torch.ones(1, 1, 32, 32))
        seen.append((engine.state.epoch, bool(out["intervened"]), loss.last_terms["causal"] != 0.0))

    engine = Engine(step)
    InterventionScheduleHandler(net, start_epoch=2).attach(engine)
    engine.run([torch.randn(1, 3, 32, 32)], max_epochs=4)
    on = [e > 2 and cdrl for e in (1, 2, 3, 4)]
    assert seen == [(e, o, o) for e, o in zip((1, 2, 3, 4), on)]
    assert bool(net.state_dict()["intervention_on"]) is cdrl  # a checkpoint remembers the state


# ---------------------------------------------------------------- causal intervention (eq. 7-8, Table 5)


def test_intervention_depth_and_dictionary_dependence():
    torch.manual_seed(0)
    counts = [sum(p.numel() for p in CausalInterventionNetwork(32, n, 4).parameters()) for n in range(1, 6)]
    per_layer = 4 * 32 * 32 + 4 * 32 + 2 * 32 * 128 + 128 + 32 + 3 * 2 * 32  # attention, MLP, three LayerNorms
    assert [b - a for a, b in zip(counts, counts[1:])] == [per_layer] * 4
    net = CausalInterventionNetwork(32, 2, 4).eval()
    features, z = torch.randn(2, 7, 32), torch.randn(12, 32)
    out = net(features, z)
    assert out.shape == (2, 7, 32)
    assert not torch.allclose(out, net(features, torch.randn(12, 32)))  # A(F, Z) depends on the dictionary
    with pytest.raises(ValueError, match="intervention_layers"):
        CausalInterventionNetwork(32, 0)


# ---------------------------------------------------------------- labels


def test_class_index_map_and_binary_views():
    mask = torch.zeros(1, 4, 4)
    mask[0, 1:3, 1:3] = 1
    t = ClassIndexMapd("label", LESION_CLASSES)
    out = t({"label": mask, "class": "nodule"})  # index 3 -> value 4
    assert torch.unique(out["label"]).tolist() == [0.0, 4.0] and int(out["label"].sum()) == 16
    with pytest.raises(ValueError, match="no 'class'"):
        t({"label": mask})
    with pytest.raises(ValueError, match="'ulcer' is not one of"):
        t({"label": mask, "class": "ulcer"})
    assert torch.equal(ClassIndexMapd("label", LESION_CLASSES, default_class="polyp")({"label": mask})["label"], mask)
    binary = BinaryFromClassIndexd("label")(out)
    assert torch.equal(binary["label"], mask) and torch.equal(binary["label_classes"], out["label"])
    probs = torch.softmax(torch.randn(6, 4, 4), 0)
    lesion = LesionProbabilityd("pred")({"pred": probs})
    torch.testing.assert_close(lesion["pred"], probs[1:].sum(0, keepdim=True))
    assert lesion["pred_classes"] is probs


# ---------------------------------------------------------------- bundle configs


def test_inference_config_builds_the_training_architecture():
    """evaluate/inference must rebuild exactly the trained network: same architecture keys and preset table."""
    import json

    configs = REPO_ROOT / "bundles" / "mcdrl" / "configs"
    train = json.loads((configs / "train.json").read_text())
    infer = json.loads((configs / "inference.json").read_text())
    for key in (
        "class_names",
        "confounders",
        "num_confounders",
        "class_prompt_template",
        "confounder_prompt_template",
        "class_confounder_prompt_template",
        "mtrs",
        "alpha",
        "cdrl",
        "intervention_layers",
        "intervention_heads",
        "unselected",
        "head_channels",
        "image_size",
        "in_channels",
        "clip_mean",
        "clip_std",
        "prompts",
        "preset",
    ):
        assert infer[key] == train[key], key
    for preset, values in infer["presets"].items():
        for key, value in values.items():
            assert train["presets"][preset][key] == value, (preset, key)
    train_net = {k: v for k, v in train["network_def"].items() if k != "output"}
    assert {k: v for k, v in infer["network_def"].items() if k != "output"} == train_net
    assert (train["network_def"]["output"], infer["network_def"]["output"]) == ("classes", "lesion")
