# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0
"""Test set-up: the repository root on sys.path, no network, few threads (CI has 2 cores)."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# never reach a hub from the tests
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTHONPATH", str(REPO_ROOT))

import socket  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


NOTE_WORDS = "unilateral bilateral pulmonary infection , one two three four infected area areas all upper middle lower"
TINY_BERT_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *NOTE_WORDS.split(),
    "left",
    "right",
    "and",
    "lung",
    ".",
]
"""The word-piece vocabulary of :func:`save_tiny_bert`: BERT's special tokens, then the words of the QaTa-style notes."""


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` as the module ``tools_<name>`` (``tools/`` is not a package; the tools import each
    other by file name, so ``tools/`` goes on ``sys.path`` first)."""
    if str(REPO_ROOT / "tools") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "tools"))
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_tiny_bert(folder: Path, **config) -> Path:
    """Save a tiny random BERT and its word-piece tokenizer to ``folder``, as a user saves a real model.

    Args:
        folder: the model folder to write (``config.json``, weights, ``vocab.txt``, tokenizer files).
        config: ``transformers.BertConfig`` fields overriding the tiny defaults (hidden size 16, one layer, two heads).

    Returns:
        ``folder``.
    """
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = TINY_BERT_VOCAB
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder.parent / f"{folder.name}_vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    torch.manual_seed(0)
    fields = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, **config}
    BertModel(BertConfig(vocab_size=len(vocab), **fields)).save_pretrained(str(folder))
    BertTokenizer(vocab=str(vocab_file)).save_pretrained(str(folder))
    return folder


@pytest.fixture()
def no_network(monkeypatch):
    """Make every socket connection fail, to prove that building and loading models stays offline."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
