# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""
Text-mask consistency: does a mask say what its clinical note says?

The C2Seg paper (section 6, limitations) notes that text-mask consistency has no quantitative metric. This module
gives one for the structured notes the project reads and writes, in three steps:

1. **Parse the note** into a :class:`NoteAttributes` (:func:`parse_note`). Two grammars are read:

   * **QaTa-COV19 / MosMedData+** (the LViT text release; ``shared/fixtures/qata_text_sample``) and this project's
     synthetic chest notes (:func:`common.data.synthetic_text.describe_lung_lesions`)::

         <Unilateral|Bilateral> pulmonary infection, <count> infected area[s], <zones> left lung[ and <zones> right lung].

     ``count`` is a number word (:data:`~common.data.synthetic_text.COUNT_WORDS`) or digits; ``zones`` is any
     sequence of ``upper``/``middle``/``lower`` in any order (QaTa writes "middle upper" once and "upper lower"
     for non-adjacent zones) or ``all`` (the three zones). **Left and right are from the viewer's side**: the
     "left lung" is the one on the left half of the displayed image (QaTa's convention, fixtures README; the
     synthetic generator follows it). The source's typos are read (:data:`QATA_TYPOS`): ``midlle`` for
     ``middle``, a count word glued to ``infected`` (``oneinfected``), a missing or doubled space after a comma
     (``areas,lower``, ``areas,  middle``), any letter case, a missing final full stop.
   * **MAdapter (MICCAI 2024) polyp annotations** (``shared/fixtures/polyp_text_madapter``) and the synthetic
     endoscopy notes (:func:`common.data.synthetic_text.describe_endoscopy_lesion`): an optional header
     ``<Count> colonic polyp[s].`` (``Many`` = at least two), then one sentence per lesion
     ``One <attributes> <lesion noun> on the <position>.`` (attributes comma-separated; the first is the size
     word when it is ``small``/``medium``/``large``), or the short form ``Polyp <position>.`` (CVC-ClinicDB test),
     or the header alone (``Two polyps.``, ``Many small colonic polyps.``). Positions are the 3x3 grid cells of
     :func:`common.data.synthetic_text.position_word`; MAdapter's ``center`` column spelling (``top center``)
     is read as the same cell as ``top middle``.

   A sentence that fits neither grammar (e.g. MAdapter's one ``unknown``) is never scored: :func:`parse_note`
   raises :class:`NoteParseError` naming it, and :func:`try_parse_note` returns an :class:`UnparsedNote` that
   the scores turn into NaN and the handlers list by file name.

2. **Measure the mask** (:func:`mask_attributes`): connected components (scikit-image ``measure.label``,
   8-connectivity, and ``measure.regionprops``), dropping components smaller than ``min_area_fraction`` of the
   image (:data:`DEFAULT_MIN_AREA_FRACTION`, 0.1 %: specks of a prediction are not lesions; the synthetic
   generator's smallest lesion is 0.15 %). Per component: its lung side, its lung zones, its 3x3 position and size
   word. Sides and zones come from :class:`LungFields`:

   * from a **zone map** (the ``lungs`` file the synthetic chest generator writes next to each image, values
     :data:`ZONE_LABELS`: 1-3 left upper/middle/lower, 4-6 right): the zone row edges of each lung and the midline
     exactly as the generator drew them (:func:`common.data.synthetic_cxr.lung_zone_edges`);
   * from a **binary lung mask** (a user's lung segmentation): the two largest components are the lungs (the
     left one has the smaller centroid column), each lung's rows are cut into thirds of its own height, the
     midline is half-way between the lungs;
   * otherwise the **geometric rule** (:meth:`LungFields.geometric`): the side is the image half (column
     fraction < 0.5 is left), and the zones are thirds of the rows of a band (``zone_band``, default
     :data:`DEFAULT_ZONE_BAND` = the whole height). Its error on ground-truth masks is measured in
     ``tools/protocols.md`` ("Text-mask consistency").

   A component's side is the side of the majority of its pixels; it involves a zone when at least
   ``min_zone_fraction`` (:data:`DEFAULT_MIN_ZONE_FRACTION`, 5 %) of its pixels lie in that zone's rows (the
   generator guarantees at least 15 % for every zone a true lesion touches, so a prediction that grazes a zone
   by a few rows does not claim it).

3. **Score** (:func:`score_consistency`, per image; a split's score is the mean over its images, NaN skipped):

   * ``count``: 1 when the number of components lies in the note's count range (exactly the count; at least 2
     for "many"), else 0; NaN when the note states no count (``Polyp center.``).
   * ``laterality`` (lung notes): 1 when the set of lungs holding a component equals the set of lungs the note
     names, else 0 (a unilateral left note and a right-lung mask score 0).
   * ``zone_precision`` / ``zone_recall`` (lung notes): over the cells ``(lung, zone)``, ``|M & N| / |M|`` and
     ``|M & N| / |N|`` with ``M`` the cells of the mask's components and ``N`` the cells the note names;
     an empty mask scores 0 for both.
   * ``position`` (endoscopy notes carrying positions): ``|P_M & P_N| / max(|P_M|, |P_N|)`` on the multisets of
     grid cells of the components and of the note's lesions (1 for one lesion in the named cell).
   * ``consistency``: 1 when every attribute the note carries is matched exactly (count agrees and, for lung
     notes, the laterality agrees and the zone cells are equal; for endoscopy notes, the positions agree), else
     0. Its mean over a split is the **consistency rate**: the share of images whose mask says what the note says.
   Zone terms do not apply to endoscopy notes and the position term does not apply to lung notes: NaN. Size words
   are parsed but not scored: MAdapter did not publish the thresholds behind its words (the synthetic ones are
   this project's, :data:`~common.data.synthetic_text.SIZE_THRESHOLDS`).
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from skimage import measure

from common.data.synthetic_cxr import LUNG_ZONE_LABELS
from common.data.synthetic_text import COUNT_WORDS, LESION_NOUNS, LUNG_ZONES, LUNGS, position_word, size_word

__all__ = [
    "DEFAULT_MIN_AREA_FRACTION",
    "DEFAULT_MIN_ZONE_FRACTION",
    "DEFAULT_ZONE_BAND",
    "QATA_TYPOS",
    "SCORE_NAMES",
    "ZONE_LABELS",
    "ComponentAttributes",
    "ConsistencyScores",
    "LungFields",
    "MaskAttributes",
    "NoteAttributes",
    "NoteParseError",
    "UnparsedNote",
    "load_lung_fields",
    "lung_fields_from_array",
    "mask_attributes",
    "parse_note",
    "score_consistency",
    "try_parse_note",
]

DEFAULT_MIN_AREA_FRACTION: float = 0.001
"""Smallest component kept, as a fraction of the image pixels (at least one pixel)."""

DEFAULT_MIN_ZONE_FRACTION: float = 0.05
"""Smallest share of a component's pixels in a zone for the component to involve that zone."""

DEFAULT_ZONE_BAND: tuple[float, float] = (0.0, 1.0)
"""Rows (fractions of the height) cut into three zones by the geometric rule when no lung fields are known."""

QATA_TYPOS: dict[str, str] = {"midlle": "middle"}
"""Misspelt words of the QaTa-COV19 text and their reading (glued count words and comma spacing are handled by
the tokenizer, see the module docstring)."""

ZONE_LABELS: dict[tuple[str, str], int] = LUNG_ZONE_LABELS
"""Values of a lung zone map: ``("left", "upper") -> 1`` ... ``("right", "lower") -> 6``; 0 outside the lungs (the
synthetic chest generator's :data:`common.data.synthetic_cxr.LUNG_ZONE_LABELS`)."""

SCORE_NAMES: tuple[str, ...] = ("count", "laterality", "zone_precision", "zone_recall", "position", "consistency")
"""The per-image scores of :class:`ConsistencyScores`, in order."""

_GRID_ROWS = ("top", "middle", "bottom")
_GRID_COLS = ("left", "middle", "right")
_COLUMN_ALIASES = {"center": "middle", "centre": "middle"}
_SIZE_WORDS = ("small", "medium", "large")
_COUNT_OF = {w: i + 1 for i, w in enumerate(COUNT_WORDS)}
_NOUNS = sorted({*LESION_NOUNS.values(), "polyp"}, key=len, reverse=True)
_NOUN_RE = "|".join(re.escape(n) for n in _NOUNS)


class NoteParseError(ValueError):
    """A note that fits no grammar of this module; the message names the sentence and what did not fit."""


@dataclass(frozen=True)
class NoteAttributes:
    """What a parsed note says.

    Attributes:
        sentence: the note as given.
        kind: ``"lung"`` (QaTa/MosMed grammar) or ``"endoscopy"`` (MAdapter grammar).
        count_range: ``(low, high)`` number of lesions the note states (``high`` None: no upper bound, "many"),
            or None when it states no count.
        laterality: ``"unilateral"``/``"bilateral"`` as written (lung notes), else None.
        lung_zones: lung notes: ``{lung: zones}`` for each lung named (viewer's side), zones in
            ``upper, middle, lower`` order; empty for endoscopy notes.
        positions: endoscopy notes: one 3x3 grid cell per described lesion (``position_word`` spelling).
        sizes: endoscopy notes: the size words written (``small``/``medium``/``large``), per lesion where given.
    """

    sentence: str
    kind: str
    count_range: tuple[int, int | None] | None
    laterality: str | None = None
    lung_zones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    positions: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()

    @property
    def cells(self) -> frozenset[tuple[str, str]]:
        """The ``(lung, zone)`` cells the note names (lung notes)."""
        return frozenset((lung, z) for lung, zones in self.lung_zones.items() for z in zones)


@dataclass(frozen=True)
class UnparsedNote:
    """A note :func:`try_parse_note` could not read; it is never scored.

    Attributes:
        sentence: the note as given.
        reason: why it did not parse (the :class:`NoteParseError` message).
    """

    sentence: str
    reason: str


def _normalise(sentence: str) -> str:
    text = sentence.strip().lower()
    for wrong, right in QATA_TYPOS.items():
        text = re.sub(rf"\b{wrong}\b", right, text)
    counts = "|".join(COUNT_WORDS)
    text = re.sub(rf"\b({counts})(infected)\b", r"\1 \2", text)  # "oneinfected"
    text = re.sub(r"\s*,\s*", ", ", text)  # "areas,lower", "areas,  middle"
    text = re.sub(r"\s*\.\s*", ". ", text)  # "polyp.One"
    return re.sub(r"\s+", " ", text).strip()


def _count(word: str, sentence: str) -> int:
    if word.isdigit() and int(word) >= 1:
        return int(word)
    if word in _COUNT_OF:
        return _COUNT_OF[word]
    raise NoteParseError(f"note {sentence!r}: {word!r} is not a lesion count (a number word or digits).")


_LUNG_RE = re.compile(
    r"^(?P<lat>unilateral|bilateral) pulmonary infection, (?P<count>\w+) infected areas?, (?P<lungs>.+?)\.?$"
)
_LUNG_PART_RE = re.compile(r"^(?P<zones>(?:(?:upper|middle|lower|all) ?)+) (?P<lung>left|right) lung$")


def _parse_lung(sentence: str, text: str) -> NoteAttributes:
    m = _LUNG_RE.match(text)
    if m is None:
        raise NoteParseError(
            f"note {sentence!r}: expected '<Unilateral|Bilateral> pulmonary infection, <count> infected area(s), "
            "<zones> left|right lung[ and ...].'"
        )
    count = _count(m["count"], sentence)
    lungs: dict[str, tuple[str, ...]] = {}
    for part in m["lungs"].split(" and "):
        pm = _LUNG_PART_RE.match(part.strip())
        if pm is None:
            raise NoteParseError(f"note {sentence!r}: {part.strip()!r} is not '<zones> left|right lung'.")
        words = set(pm["zones"].split())
        zones = tuple(LUNG_ZONES) if "all" in words else tuple(z for z in LUNG_ZONES if z in words)
        if pm["lung"] in lungs:
            raise NoteParseError(f"note {sentence!r}: the {pm['lung']} lung is named twice.")
        lungs[pm["lung"]] = zones
    expected = "bilateral" if len(lungs) == 2 else "unilateral"
    if m["lat"] != expected:
        raise NoteParseError(f"note {sentence!r}: says {m['lat']} but names {len(lungs)} lung(s).")
    if count < len(lungs):
        raise NoteParseError(f"note {sentence!r}: {count} infected area(s) cannot cover {len(lungs)} lungs.")
    return NoteAttributes(sentence, "lung", (count, count), m["lat"], {k: lungs[k] for k in LUNGS if k in lungs})


def _position(words: str, sentence: str) -> str:
    parts = words.split()
    if parts == ["center"] or parts == ["centre"]:
        return "center"
    if len(parts) == 2:
        row, col = parts[0], _COLUMN_ALIASES.get(parts[1], parts[1])
        if row in _GRID_ROWS and col in _GRID_COLS:
            return "center" if (row, col) == ("middle", "middle") else f"{row} {col}"
    raise NoteParseError(f"note {sentence!r}: {words!r} is not a 3x3 grid position (e.g. 'top left', 'center').")


_HEADER_RE = re.compile(rf"^(?P<count>\w+)(?: (?P<size>small|medium|large))? (?:colonic )?(?:{_NOUN_RE})s?$")
_LESION_RE = re.compile(rf"^one (?P<attrs>.*?) ?(?:{_NOUN_RE}) on the (?P<pos>[a-z ]+)$")
_SHORT_RE = re.compile(r"^polyp (?P<pos>[a-z ]+)$")


def _parse_endoscopy(sentence: str, text: str) -> NoteAttributes:
    clauses = [c.strip() for c in text.split(". ") if c.strip(" .")]
    clauses = [c.rstrip(".").strip() for c in clauses]
    count_range: tuple[int, int | None] | None = None
    positions: list[str] = []
    sizes: list[str] = []
    for i, clause in enumerate(clauses):
        lesion = _LESION_RE.match(clause)
        short = _SHORT_RE.match(clause)
        header = _HEADER_RE.match(clause)
        if lesion is not None:
            attrs = [a.strip() for a in lesion["attrs"].split(",") if a.strip()]
            if attrs and attrs[0] in _SIZE_WORDS:
                sizes.append(attrs[0])
            positions.append(_position(lesion["pos"].strip(), sentence))
        elif short is not None and len(clauses) == 1:
            positions.append(_position(short["pos"].strip(), sentence))
        elif header is not None and i == 0:
            word = header["count"]
            count_range = (2, None) if word == "many" else (_count(word, sentence),) * 2
            if header["size"]:
                sizes.append(header["size"])
        else:
            raise NoteParseError(f"note {sentence!r}: clause {clause!r} fits no MAdapter-style sentence.")
    lesion_sentences = sum(1 for c in clauses if _LESION_RE.match(c))
    if count_range is None and lesion_sentences:
        count_range = (lesion_sentences, lesion_sentences)
    elif count_range is not None and lesion_sentences and count_range[0] != lesion_sentences:
        raise NoteParseError(f"note {sentence!r}: the header counts {count_range[0]} but {lesion_sentences} follow.")
    return NoteAttributes(sentence, "endoscopy", count_range, positions=tuple(positions), sizes=tuple(sizes))


def parse_note(sentence: str) -> NoteAttributes:
    """Read a QaTa/MosMed chest note or a MAdapter polyp note into its attributes (module docstring, step 1).

    Args:
        sentence: the note, e.g. ``"Bilateral pulmonary infection, two infected areas, upper midlle left lung and
            lower right lung."`` or ``"Two colonic polyps.One small,elliptical,smooth colonic polyp on the top
            center.One medium,irregular,smooth colonic polyp on the center."``.

    Returns:
        The :class:`NoteAttributes`.

    Raises:
        NoteParseError: when the sentence fits neither grammar (the message quotes it and says what did not fit).
    """
    if not isinstance(sentence, str) or not sentence.strip():
        raise NoteParseError(f"note {sentence!r}: a note must be a non-empty string.")
    text = _normalise(sentence)
    if "pulmonary infection" in text:
        return _parse_lung(sentence, text)
    return _parse_endoscopy(sentence, text)


def try_parse_note(sentence: str) -> NoteAttributes | UnparsedNote:
    """:func:`parse_note` that returns an :class:`UnparsedNote` instead of raising.

    Args:
        sentence: the note.

    Returns:
        The :class:`NoteAttributes`, or an :class:`UnparsedNote` naming the sentence and the reason.
    """
    try:
        return parse_note(sentence)
    except NoteParseError as e:
        return UnparsedNote(str(sentence), str(e))


@dataclass(frozen=True)
class LungFields:
    """Where the lungs and their zones are, as fractions of the image (resolution-free).

    A mask row ``r`` of an ``H``-row mask lies at ``(r + 0.5) / H``; it is in the middle zone of a lung when
    ``edges[0] <= (r + 0.5) / H < edges[1]``, above in the upper zone, below in the lower zone. A column ``c`` of a
    ``W``-column mask is on the left lung's side when ``(c + 0.5) / W < midline`` (viewer's left).

    Attributes:
        midline: column fraction separating the left and the right lung.
        zone_edges: ``{lung: (middle_start, lower_start)}`` row fractions.
        source: ``"zone_map"``, ``"lung_mask"`` or ``"geometric"`` (how they were found).
    """

    midline: float
    zone_edges: Mapping[str, tuple[float, float]]
    source: str

    @classmethod
    def geometric(cls, zone_band: Sequence[float] = DEFAULT_ZONE_BAND) -> LungFields:
        """The rule used without lung fields: image halves for the side, thirds of ``zone_band`` for the zones.

        Args:
            zone_band: ``(top, bottom)`` row fractions, ``0 <= top < bottom <= 1``; default the whole height.

        Raises:
            ValueError: when ``zone_band`` is not two increasing fractions in [0, 1].
        """
        band = tuple(float(v) for v in zone_band)
        if len(band) != 2 or not 0.0 <= band[0] < band[1] <= 1.0:
            raise ValueError(f"zone_band must be (top, bottom) with 0 <= top < bottom <= 1, got {zone_band!r}.")
        third = (band[1] - band[0]) / 3.0
        edges = (band[0] + third, band[0] + 2.0 * third)
        return cls(0.5, {lung: edges for lung in LUNGS}, "geometric")


def lung_fields_from_array(lungs: np.ndarray, name: str = "lungs") -> LungFields:
    """Lung fields from a zone map (values :data:`ZONE_LABELS`) or a binary lung mask (module docstring, step 2).

    A map whose non-zero values are at least two distinct integers among 1..6 is a zone map; anything else is a
    binary mask (pixels above half the maximum).

    Args:
        lungs: 2D array (a 3D array's first channel is used).
        name: what to call the array in errors (e.g. its file).

    Returns:
        The :class:`LungFields`.

    Raises:
        ValueError: when the array is empty of lungs, or a zone map lacks a lung's zones.
    """
    arr = np.asarray(lungs)
    if arr.ndim == 3:
        arr = arr[..., 0] if arr.shape[-1] <= 4 else arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{name}: a lung field map must be 2D, got shape {arr.shape}.")
    height, width = arr.shape
    values = np.unique(arr[arr > 0])
    if values.size == 0:
        raise ValueError(f"{name}: the lung field map has no lung pixel.")
    if values.size >= 2 and set(values.tolist()) <= set(ZONE_LABELS.values()):
        edges: dict[str, tuple[float, float]] = {}
        inner: dict[str, int] = {}
        for lung in LUNGS:
            starts = []
            for zone in ("middle", "lower"):
                rows = np.nonzero((arr == ZONE_LABELS[(lung, zone)]).any(axis=1))[0]
                if rows.size == 0:
                    raise ValueError(f"{name}: the zone map has no {zone} zone of the {lung} lung.")
                starts.append(rows[0] / height)
            edges[lung] = (float(starts[0]), float(starts[1]))
            cols = np.nonzero(np.isin(arr, [ZONE_LABELS[(lung, z)] for z in LUNG_ZONES]).any(axis=0))[0]
            inner[lung] = int(cols[-1] + 1) if lung == "left" else int(cols[0])
        return LungFields(0.5 * (inner["left"] + inner["right"]) / width, edges, "zone_map")
    binary = arr > (arr.max() / 2.0)
    labels = measure.label(binary, connectivity=2)
    regions = sorted(measure.regionprops(labels), key=lambda r: r.area, reverse=True)[:2]
    if len(regions) == 2:
        regions = sorted(regions, key=lambda r: r.centroid[1])
        boxes = [r.bbox for r in regions]  # (min_row, min_col, max_row, max_col)
        midline = 0.5 * (boxes[0][3] + boxes[1][1]) / width
    else:  # lungs touching: cut at the image middle
        half = width // 2
        boxes = []
        for part in (binary[:, :half], binary[:, half:]):
            rows = np.nonzero(part.any(axis=1))[0]
            if rows.size == 0:
                raise ValueError(f"{name}: the lung mask covers one image half only; two lungs are needed.")
            boxes.append((rows[0], 0, rows[-1] + 1, 0))
        midline = 0.5
    edges = {}
    for lung, box in zip(LUNGS, boxes):
        top, bottom = box[0] / height, box[2] / height
        third = (bottom - top) / 3.0
        edges[lung] = (top + third, top + 2.0 * third)
    return LungFields(float(midline), edges, "lung_mask")


@functools.lru_cache(maxsize=512)
def _load_cached(path: str, mtime: float) -> LungFields:
    from PIL import Image

    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except OSError as e:
        raise ValueError(f"lungs file {path!r} cannot be read as an image: {e}") from e
    return lung_fields_from_array(arr, name=f"lungs file {path!r}")


def load_lung_fields(path: str | os.PathLike) -> LungFields:
    """Lung fields from an image file (zone map or binary lung mask), cached per file and modification time.

    Args:
        path: the file (PNG or any format PIL reads).

    Raises:
        FileNotFoundError: when the file does not exist (named).
        ValueError: when it cannot be read or holds no usable lungs (named).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"lungs file {path!r} does not exist.")
    return _load_cached(os.path.abspath(path), os.path.getmtime(path))


@dataclass(frozen=True)
class ComponentAttributes:
    """One connected component of a mask.

    Attributes:
        area: pixels.
        lung: ``"left"``/``"right"`` (viewer's side; the side of the majority of its pixels).
        zones: the zones holding at least ``min_zone_fraction`` of its pixels, in ``upper, middle, lower`` order.
        position: its 3x3 grid cell from the centroid (:func:`~common.data.synthetic_text.position_word`).
        size: its size word from its area fraction (:func:`~common.data.synthetic_text.size_word`).
    """

    area: int
    lung: str
    zones: tuple[str, ...]
    position: str
    size: str


@dataclass(frozen=True)
class MaskAttributes:
    """What a mask shows: its components (largest first) and the lung fields used.

    Attributes:
        components: one :class:`ComponentAttributes` per kept component.
        lung_fields: the :class:`LungFields` the sides and zones came from.
    """

    components: tuple[ComponentAttributes, ...]
    lung_fields: LungFields

    @property
    def count(self) -> int:
        """Number of kept components."""
        return len(self.components)

    @property
    def lungs(self) -> frozenset[str]:
        """Lungs holding a component."""
        return frozenset(c.lung for c in self.components)

    @property
    def cells(self) -> frozenset[tuple[str, str]]:
        """``(lung, zone)`` cells of the components."""
        return frozenset((c.lung, z) for c in self.components for z in c.zones)

    def lung_lesions(self) -> list[tuple[str, tuple[str, ...]]]:
        """``(lung, zones)`` per component with at least one zone, for
        :func:`common.data.synthetic_text.describe_lung_lesions`."""
        return [(c.lung, c.zones) for c in self.components if c.zones]


def _as_2d_mask(mask: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 3 and arr.shape[0] > 1:  # (C, H, W) scores or one-hot: lesion = any class but 0
        arr = np.argmax(arr, axis=0)
    if arr.ndim != 2:
        raise ValueError(f"mask must be (H, W), (1, H, W) or (C, H, W), got shape {np.asarray(mask).shape}.")
    if arr.dtype == bool:
        return arr
    return arr > (0.5 if arr.max(initial=0) <= 1 else 127)


def mask_attributes(
    mask: np.ndarray,
    lung_fields: LungFields | None = None,
    min_area_fraction: float = DEFAULT_MIN_AREA_FRACTION,
    min_zone_fraction: float = DEFAULT_MIN_ZONE_FRACTION,
) -> MaskAttributes:
    """The components of a mask with their side, zones, position and size (module docstring, step 2).

    Args:
        mask: ``(H, W)`` or ``(1, H, W)`` binary mask ({0, 1}, {0, 255}, bool or probabilities: foreground above
            0.5, or above 127 when the maximum exceeds 1), or ``(C, H, W)`` class scores (foreground = argmax > 0).
        lung_fields: where the lungs and zones are; None: :meth:`LungFields.geometric` with the whole height.
        min_area_fraction: components with fewer than ``max(1, ceil(min_area_fraction * H * W))`` pixels are
            dropped; default :data:`DEFAULT_MIN_AREA_FRACTION`.
        min_zone_fraction: a component involves a zone holding at least this share of its pixels; default
            :data:`DEFAULT_MIN_ZONE_FRACTION`.

    Returns:
        The :class:`MaskAttributes`, components largest first.

    Raises:
        ValueError: when the mask shape is not accepted or a fraction is outside [0, 1).
    """
    for key, value in (("min_area_fraction", min_area_fraction), ("min_zone_fraction", min_zone_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {value!r}.")
    binary = _as_2d_mask(mask)
    fields = lung_fields if lung_fields is not None else LungFields.geometric()
    height, width = binary.shape
    min_pixels = max(1, math.ceil(min_area_fraction * height * width))
    labels = measure.label(binary, connectivity=2)
    row_pos = (np.arange(height) + 0.5) / height
    components = []
    for region in measure.regionprops(labels):
        if region.area < min_pixels:
            continue
        rows, cols = region.coords[:, 0], region.coords[:, 1]
        left_share = float(np.mean((cols + 0.5) / width < fields.midline))
        lung = "left" if left_share >= 0.5 else "right"
        middle_start, lower_start = fields.zone_edges[lung]
        r = row_pos[rows]
        shares = (
            np.mean(r < middle_start),
            np.mean((r >= middle_start) & (r < lower_start)),
            np.mean(r >= lower_start),
        )
        zones = tuple(z for z, s in zip(LUNG_ZONES, shares) if s > 0 and s >= min_zone_fraction)
        centroid = ((rows.mean() + 0.5) / height, (cols.mean() + 0.5) / width)
        components.append(
            ComponentAttributes(
                area=int(region.area),
                lung=lung,
                zones=zones,
                position=position_word(min(max(centroid[0], 0.0), 1.0), min(max(centroid[1], 0.0), 1.0)),
                size=size_word(region.area / float(height * width)),
            )
        )
    components.sort(key=lambda c: -c.area)
    return MaskAttributes(tuple(components), fields)


@dataclass(frozen=True)
class ConsistencyScores:
    """Per-image consistency scores (definitions in the module docstring, step 3); NaN where a term does not apply.

    Attributes:
        count: count agreement, 0 or 1.
        laterality: laterality agreement, 0 or 1 (lung notes).
        zone_precision: share of the mask's (lung, zone) cells the note names (lung notes).
        zone_recall: share of the note's (lung, zone) cells the mask covers (lung notes).
        position: grid-position agreement in [0, 1] (endoscopy notes with positions).
        consistency: 1 when every attribute the note carries is matched, else 0.
    """

    count: float
    laterality: float
    zone_precision: float
    zone_recall: float
    position: float
    consistency: float

    def as_dict(self) -> dict[str, float]:
        """``{score name: value}`` in :data:`SCORE_NAMES` order."""
        return {name: getattr(self, name) for name in SCORE_NAMES}


_NAN = float("nan")


def score_consistency(note: NoteAttributes | UnparsedNote, mask: MaskAttributes) -> ConsistencyScores:
    """Score a mask against a note (module docstring, step 3).

    Args:
        note: from :func:`try_parse_note`; an :class:`UnparsedNote` scores NaN everywhere.
        mask: from :func:`mask_attributes`.

    Returns:
        The :class:`ConsistencyScores`.
    """
    if isinstance(note, UnparsedNote):
        return ConsistencyScores(_NAN, _NAN, _NAN, _NAN, _NAN, _NAN)
    checks: list[bool] = []
    count = _NAN
    if note.count_range is not None:
        low, high = note.count_range
        agrees = mask.count >= low and (high is None or mask.count <= high)
        count = float(agrees)
        checks.append(agrees)
    laterality = precision = recall = position = _NAN
    if note.kind == "lung":
        laterality = float(mask.lungs == frozenset(note.lung_zones))
        named, shown = note.cells, mask.cells
        both = len(named & shown)
        precision = both / len(shown) if shown else 0.0
        recall = both / len(named) if named else 0.0
        checks += [laterality == 1.0, named == shown]
    elif note.positions:
        wanted, found = Counter(note.positions), Counter(c.position for c in mask.components)
        position = sum((wanted & found).values()) / max(sum(wanted.values()), sum(found.values()))
        checks.append(position == 1.0)
    consistency = float(all(checks)) if checks else _NAN
    return ConsistencyScores(count, laterality, precision, recall, position, consistency)
