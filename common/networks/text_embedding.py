# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Text embedders for the text-guided networks: a trainable token table (the offline default) and a frozen Hugging Face
BERT-family encoder loaded from a local folder (the LViT paper's setting: BERT-base uncased, frozen, 10 x 768
vectors per text; /work/shared/papers/lvit.txt section 3.1, /work/shared/reference/method_notes.md section 1.2).
"""

from __future__ import annotations

__all__ = ["TokenEmbedding", "HFTextEncoder", "check_hf_model_dir"]

import os

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    """
    A trainable embedding table: token ids (B, L) -> vectors (B, L, dim).

    This is the offline default text embedder of the text-guided networks: it needs no pretrained weights, only the
    vocabulary size of the tokenizer: a few dozen rows for a word vocabulary drawn from the training notes
    (:py:class:`common.transforms.WordVocabTokenizer`, LViT's default: 23 rows for the built-in synthetic chest X-ray
    notes), or 49408 for CLIP's byte-pair-encoding tokenizer that ships inside the open_clip package
    (:py:class:`common.transforms.OpenCLIPTokenizer`). A small table matters for training speed, not only size:
    Adam keeps two moments per row and updates every row at every step (a row without a token in the batch still
    moves while its moments are non-zero), so a 49,408 x 768 table costs a full-table update per step. The table is
    ``torch.nn.Embedding``
    (initialised from N(0, 1), PyTorch's default) with ``padding_idx=pad_id``: the padding row is zero and receives
    no gradient. Note that id 0, the padding id of open_clip's tokenizer, is also the id of the token ``"!"`` in
    CLIP's vocabulary (open_clip pads with 0), so with ``pad_id=0`` an exclamation mark is embedded as padding.

    Ids outside ``[0, vocab_size)`` raise a ``ValueError`` naming the offending value (eager mode; in a TorchScript
    module the same check raises ``torch.jit.Error`` with the same message) instead of PyTorch's bare index error on
    CPU or a device-side assertion on CUDA. The check costs one host-device synchronisation per call.

    Args:
        vocab_size: number of token ids (rows of the table), >= 1.
        dim: size of each vector, >= 1. Defaults to 768 (BERT-base's hidden size, the text width LViT expects).
        pad_id: id of the padding token, in ``[0, vocab_size)``, or ``None`` for no padding row. Defaults to 0
            (the padding id of :py:class:`common.transforms.OpenCLIPTokenizer` and of BERT tokenizers).

    Raises:
        ValueError: when ``vocab_size`` or ``dim`` is not positive, or ``pad_id`` is outside ``[0, vocab_size)``.

    Examples::

        tokenizer = WordVocabTokenizer.from_texts(training_notes)  # <pad> = 0, <unk> = 1, then the words
        embed = TokenEmbedding(vocab_size=tokenizer.vocab_size, dim=768, pad_id=tokenizer.pad_id)
        vectors = embed(tokenizer(["Unilateral pulmonary infection."]).ids)  # (1, context_length, 768)
    """

    def __init__(self, vocab_size: int, dim: int = 768, pad_id: int | None = 0) -> None:
        super().__init__()
        if vocab_size < 1 or dim < 1:
            raise ValueError(f"vocab_size and dim must be positive, got vocab_size={vocab_size}, dim={dim}.")
        if pad_id is not None and not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id must be in [0, {vocab_size}) (vocab_size), got {pad_id}.")
        self.vocab_size = int(vocab_size)
        self.dim = int(dim)
        self.embedding = nn.Embedding(self.vocab_size, self.dim, padding_idx=pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """
        Args:
            ids: integer token ids of shape (B, L) with values in ``[0, vocab_size)``.

        Returns:
            float tensor of shape (B, L, dim).

        Raises:
            ValueError: when ``ids`` is not an integer tensor of shape (B, L) or holds an id outside
                ``[0, vocab_size)`` (``torch.jit.Error`` with the same message when scripted).
        """
        if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
            raise ValueError(
                f"TokenEmbedding expects integer token ids, got dtype {ids.dtype}; float text embeddings must be "
                "passed to the network without a text embedder."
            )
        if ids.dim() != 2:
            raise ValueError(f"TokenEmbedding expects token ids of shape (B, L), got shape {list(ids.shape)}.")
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bool(bad.any()):
            value = int(ids[bad][0])
            raise ValueError(
                f"token id {value} is outside [0, {self.vocab_size}) (vocab_size of the TokenEmbedding); the "
                "tokenizer and the embedding table do not match."
            )
        return self.embedding(ids)


def check_hf_model_dir(path: str | os.PathLike) -> str:
    """
    Check that ``path`` is a local folder holding a saved Hugging Face model, before transformers is asked to load it.

    A folder written by ``model.save_pretrained(path)`` holds ``config.json`` and the weights
    (``model.safetensors``, ``pytorch_model.bin`` or sharded variants with an index file).

    Args:
        path: the folder.

    Returns:
        ``path`` as a string.

    Raises:
        FileNotFoundError: when ``path`` is empty, not a directory or holds no ``config.json``; the message names
            ``path`` and, when a bundle's ``large_files.yml`` lists it, the ``download_large_files`` command that
            fetches it and the override that trains without it (:func:`common.utils.missing_file_message`).
    """
    from common.utils.large_files import find_large_file, missing_file_message

    path = os.fspath(path)
    problem = ""
    if not path:
        problem = "is not set (empty path)"
    elif not os.path.isdir(path):
        problem = "not found"
    elif "config.json" not in os.listdir(path):
        problem = f"has no config.json (found {sorted(os.listdir(path))})"
    if not problem:
        return path
    message = missing_file_message(path, "Hugging Face model folder", problem=problem)
    if find_large_file(path) is None:
        message += (
            " To make one: `AutoModel.from_pretrained(name).save_pretrained(path)` and "
            "`AutoTokenizer.from_pretrained(name).save_pretrained(path)` on a machine with network access."
        )
    raise FileNotFoundError(message)


class HFTextEncoder(nn.Module):
    """
    A Hugging Face BERT-family text encoder (BERT-base uncased, CXR-BERT, ...) loaded from a local folder.

    The model is built with ``transformers.AutoModel.from_pretrained(path, local_files_only=local_files_only)``, the
    bare encoder without a task head (a checkpoint saved with a masked-language-model head loads too; the head
    weights are left out). With ``local_files_only=True`` (default) ``path`` must be a local folder and the network is
    never used; with ``False`` it may also be a hub id, and transformers then honours ``HF_HUB_OFFLINE=1``.

    With ``freeze=True`` (default; the LViT paper keeps BERT frozen, section 3.1) every parameter has
    ``requires_grad=False`` and the model stays in evaluation mode (dropout off) even when the parent network is
    put in training mode.

    Args:
        path: folder written by ``model.save_pretrained(path)`` (or, only with ``local_files_only=False``, a hub id).
        layer: which hidden states to return: ``-1`` (default) the last layer, ``0`` the embedding layer output,
            ``k`` the output of Transformer layer ``k``; any index into the ``num_hidden_layers + 1`` hidden states
            (negative indices count from the end).
        freeze: freeze the weights and keep evaluation mode. Defaults to ``True``.
        local_files_only: forwarded to ``from_pretrained``. Defaults to ``True``.

    Attributes:
        hidden_size: the width of the returned vectors (768 for BERT-base).
        num_layers: the number of Transformer layers of the model.
        layer: the selected hidden-state index, made non-negative (``num_layers`` for the last layer).

    Raises:
        FileNotFoundError: when ``local_files_only`` and ``path`` is not a directory or has no ``config.json``.
        ValueError: when transformers cannot build the model from ``path`` (unknown model type, no weights file,
            a broken config; the message names ``path``), or when ``layer`` is out of range.

    Examples::

        encoder = HFTextEncoder("/models/bert-base-uncased")
        tokens = HFTokenizer("/models/bert-base-uncased", max_length=32)(["Unilateral pulmonary infection."])
        hidden = encoder(tokens.ids, tokens.attention_mask)  # (1, 32, 768)
    """

    def __init__(
        self, path: str | os.PathLike, layer: int = -1, freeze: bool = True, local_files_only: bool = True
    ) -> None:
        super().__init__()
        path = check_hf_model_dir(path) if local_files_only else os.fspath(path)
        from transformers import AutoModel

        try:
            model = AutoModel.from_pretrained(path, local_files_only=local_files_only)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"could not load a Hugging Face model from {path}: {e}") from e
        num_layers = int(model.config.num_hidden_layers)
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"layer must index one of the {num_layers + 1} hidden states of the model in {path} "
                f"(-{num_layers + 1}..{num_layers}), got {layer}."
            )
        self.model = model
        self.path = path
        self.num_layers = num_layers
        self.layer = layer % (num_layers + 1)
        self.hidden_size = int(model.config.hidden_size)
        self.frozen = bool(freeze)
        if self.frozen:
            self.model.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> HFTextEncoder:
        """
        Set training mode like ``nn.Module.train``, except that a frozen encoder always stays in evaluation mode.

        Args:
            mode: training mode. Defaults to ``True``.

        Returns:
            this module.
        """
        super().train(mode and not self.frozen)
        return self

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            ids: token ids (B, L) from the model's own tokenizer (e.g. :py:class:`common.transforms.HFTokenizer`).
            attention_mask: (B, L), 1 for real tokens and 0 for padding. Defaults to ``None`` (all tokens attended).

        Returns:
            the hidden states of ``layer``, float tensor (B, L, hidden_size).
        """
        if self.layer == self.num_layers:
            return self.model(input_ids=ids, attention_mask=attention_mask).last_hidden_state
        out = self.model(input_ids=ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[self.layer]
