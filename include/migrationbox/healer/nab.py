"""NAB scoring: the Numenta Anomaly Benchmark's rules, for measuring the healer's detector.

No maintained package implements NAB's scorer (NAB's own code is a repository, not a
package, and AGPL-licensed), so this module re-implements the published rules from NAB's
README ("Scoring") and ``nab/sweeper.py`` (numenta/NAB, commit ea702d7) without copying
its code:

* **Probation.** The first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of a file (15 %,
  at most 750) are not scored: detections there cost nothing, and a window whose rows all
  lie there is not counted.
* **Windows.** Each labelled anomaly window ``[start, end]`` (inclusive, by row) is scored
  once: by its *earliest* detection, weighted by ``scaled_sigmoid(p)`` where
  ``p = -(right - i + 1) / width`` is the row's position in the window (-1 at its first
  row, close to 0 at its last), divided by ``scaled_sigmoid(-1)`` so that a detection on
  the window's first row earns exactly ``tp_weight``. A window with no detection costs
  ``fn_weight``.
* **False positives.** Every detection outside all windows costs ``fp_weight`` times
  ``-scaled_sigmoid(d)`` where ``d = |i - right_prev| / (width_prev - 1)`` is its distance
  past the *preceding* window in that window's widths (a detection just after a window
  costs little, one three or more widths later the full weight); before the first window
  it costs the full weight.
* ``scaled_sigmoid(x) = 2 / (1 + exp(5x)) - 1``, and -1 for ``x >= 3``.
* **Profiles** (``labels/profiles.json``): standard (TP 1, FN 1, FP 0.11),
  reward_low_FP_rate (FP 0.22), reward_low_FN_rate (FN 2).
* **Normalised score** over a corpus: ``100 * (S - S_null) / (S_perfect - S_null)``, with
  ``S`` the sum of the files' raw scores, the null detector flagging nothing
  (``S_null = -fn_weight * windows``, windows counted as scored above, which is what
  NAB's null detector scores) and ``S_perfect = tp_weight * labelled windows``: NAB's
  ``runner.normalize`` counts every window of the label file there, including one wholly
  in probation, so such a window keeps any detector below 100 (none of nab-dev's 67
  windows is: the two counts agree there).
* **Thresholds.** NAB sweeps each detector's anomaly-score threshold and keeps, per
  profile, the one maximising the raw score summed over its whole corpus (58 files); the
  published scores are therefore in-sample for the threshold. This module scores
  detections, i.e. rows already at or above a threshold; the healer's incident detector
  emits alert events (1 where an incident opens, 0 elsewhere), so it has no threshold to
  sweep and its parameters are chosen on the tuning split only (see :func:`split_names`).
* **Windows** come from NAB's label file as published (NAB's labeller made each about
  10 % of the file's length divided by its number of anomalies, centred on the labelled
  point, merging overlaps); nothing here recomputes them.

Detections are booleans per row (a detector's scores at or above its threshold), in the
file's row order, as NAB scores them. Window limits are matched to rows by time as NAB
does: the window opens at the first row whose timestamp is ``start`` and closes at the
*first* row whose timestamp is ``end`` (NAB's ``timestamps.index(end)``; it matters only
when the end timestamp is repeated). Limits that are not exactly a row's timestamp (NAB
requires them to be) are widened to the nearest rows inside: the first row after
``start`` and the last row before ``end``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15


@dataclass(frozen=True)
class CostProfile:
    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


#: NAB's three application profiles (``config/profiles.json``; copied with the data in
#: ``ml/data/anomaly/nab-dev/labels/profiles.json``)
PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def load_profiles(path: str | Path) -> dict[str, CostProfile]:
    """Profiles from a NAB ``profiles.json`` (``{name: {"CostMatrix": {...}}}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for name, body in data.items():
        cost = body["CostMatrix"]
        out[name] = CostProfile(name, float(cost["tpWeight"]), float(cost["fpWeight"]),
                                float(cost["fnWeight"]))
    return out


def scaled_sigmoid(position: float) -> float:
    """NAB's weighting of a detection at ``position`` (window widths, see module doc)."""
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows at the start of a file that are not scored (NAB: 15 %, at most 750)."""
    return min(math.floor(percent * rows), percent * 5000)


@dataclass(frozen=True)
class FileScore:
    """One file's raw score under one profile, with the counts behind it."""

    name: str
    profile: str
    score: float
    windows: int  # windows scored (not wholly in probation)
    detected_windows: int
    tp_rows: int  # detections inside windows
    fp_rows: int  # scored detections outside windows
    fp_cost: float  # the (negative) sum of the false positives' weighted scores
    #: every window given, including those wholly in probation (NAB's perfect score
    #: counts them); None means the same as ``windows``
    labelled_windows: int | None = None


def window_rows(timestamps: Sequence[pd.Timestamp] | pd.DatetimeIndex,
                windows: Iterable[tuple[object, object]]) -> list[tuple[int, int]]:
    """Row ranges ``(left, right)`` (inclusive) of each window; empty windows dropped.

    ``timestamps`` must be in file order and non-decreasing (repeated values allowed).
    """
    index = pd.DatetimeIndex(pd.to_datetime(pd.Index(timestamps)))
    out = []
    for start, end in windows:
        left = int(index.searchsorted(pd.Timestamp(start), side="left"))
        stop = pd.Timestamp(end)
        right = int(index.searchsorted(stop, side="left"))
        if right >= len(index) or index[right] != stop:  # not a row's timestamp
            right = int(index.searchsorted(stop, side="right")) - 1
        if left <= right:
            out.append((left, right))
    return out


def score_file(detections: Sequence[bool] | np.ndarray, windows: Sequence[tuple[int, int]],
               profile: CostProfile, *, name: str = "") -> FileScore:
    """Raw NAB score of one file: ``windows`` as row ranges (see :func:`window_rows`),
    ``detections`` one boolean per row."""
    flags = np.asarray(detections, dtype=bool)
    n = len(flags)
    probation = probation_length(n)
    max_tp = scaled_sigmoid(-1.0)
    ordered = sorted(windows)
    for (_, r1), (l2, _) in pairwise(ordered):
        if l2 <= r1:
            raise ValueError(f"{name or 'file'}: windows overlap (rows {l2}..{r1})")
    in_window = np.full(n, -1, dtype=int)
    for k, (left, right) in enumerate(ordered):
        in_window[left:right + 1] = k
    scored_windows = [k for k, (_, right) in enumerate(ordered) if right >= probation]
    best = {k: -profile.fn_weight for k in scored_windows}
    fp_cost = 0.0
    tp_rows = fp_rows = 0
    rights = np.array([right for _, right in ordered], dtype=int)
    # only detections matter (a row without one adds nothing), so walk those alone
    for i in np.flatnonzero(flags):
        if i < probation:
            continue
        k = in_window[i]
        if k >= 0:
            left, right = ordered[k]
            width = right - left + 1
            weighted = scaled_sigmoid(-(right - i + 1) / width) * profile.tp_weight / max_tp
            best[k] = max(best[k], weighted)
            tp_rows += 1
        else:
            before = int(np.searchsorted(rights, i, side="left")) - 1  # last window passed
            if before < 0:
                position = 3.0
            else:
                left, right = ordered[before]
                width = right - left + 1
                # a one-row window has no width to measure distance in: NAB divides by
                # zero there; any distance then counts as "far past" (full weight)
                position = abs(i - right) / (width - 1) if width > 1 else 3.0
            fp_cost += scaled_sigmoid(position) * profile.fp_weight
            fp_rows += 1
    detected = sum(1 for k in scored_windows if best[k] > -profile.fn_weight)
    return FileScore(name=name, profile=profile.name, score=sum(best.values()) + fp_cost,
                     windows=len(scored_windows), detected_windows=detected, tp_rows=tp_rows,
                     fp_rows=fp_rows, fp_cost=fp_cost, labelled_windows=len(ordered))


@dataclass(frozen=True)
class CorpusScore:
    profile: str
    normalised: float
    raw: float
    null: float
    perfect: float
    windows: int
    detected_windows: int
    fp_rows: int
    files: tuple[FileScore, ...]


def normalise(files: Sequence[FileScore], profile: CostProfile) -> CorpusScore:
    """NAB's normalised score of a set of files scored under ``profile`` (null and perfect
    baselines as in the module doc)."""
    windows = sum(f.windows for f in files)
    labelled = sum(f.windows if f.labelled_windows is None else f.labelled_windows
                   for f in files)
    raw = sum(f.score for f in files)
    null = -profile.fn_weight * windows  # what NAB's null detector scores
    perfect = profile.tp_weight * labelled  # NAB: tpCount = every labelled window
    if perfect == null:
        raise ValueError("no scored windows: the normalised score is undefined")
    return CorpusScore(profile=profile.name, normalised=100.0 * (raw - null) / (perfect - null),
                       raw=raw, null=null, perfect=perfect, windows=windows,
                       detected_windows=sum(f.detected_windows for f in files),
                       fp_rows=sum(f.fp_rows for f in files), files=tuple(files))


def score_corpus(detections: Mapping[str, Sequence[bool] | np.ndarray],
                 windows: Mapping[str, Sequence[tuple[int, int]]],
                 profiles: Mapping[str, CostProfile] | None = None
                 ) -> dict[str, CorpusScore]:
    """Normalised score per profile of ``detections`` (file name -> booleans per row)
    against ``windows`` (file name -> row ranges)."""
    out = {}
    for key, profile in (profiles or PROFILES).items():
        files = [score_file(detections[name], windows.get(name, []), profile, name=name)
                 for name in detections]
        out[key] = normalise(files, profile)
    return out


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class NabFile:
    name: str  # "<category>/<file>.csv", the key of NAB's label files
    timestamps: pd.DatetimeIndex  # file order
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]  # row ranges

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def load_corpus(root: str | Path, names: Iterable[str] | None = None) -> list[NabFile]:
    """Files of a NAB-layout folder (``data/<category>/<file>.csv[.gz]`` and
    ``labels/combined_windows.json``), in sorted name order; ``names`` picks a subset."""
    root = Path(root)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    wanted = sorted(labels) if names is None else sorted(names)
    out = []
    for name in wanted:
        if name not in labels:
            raise KeyError(f"{name}: not in {root / 'labels' / 'combined_windows.json'}")
        path = root / "data" / name
        if not path.exists():
            path = path.with_name(path.name + ".gz")
        frame = pd.read_csv(path)
        stamps = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
        out.append(NabFile(name, stamps, frame["value"].to_numpy(dtype=float),
                           tuple(window_rows(stamps, labels[name]))))
    return out


def split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """The fixed tuning / held-out split: within each category, files in sorted name
    order alternate, the 1st, 3rd, ... for tuning and the 2nd, 4th, ... held out."""
    tune: list[str] = []
    held: list[str] = []
    by_category: dict[str, list[str]] = {}
    for name in sorted(names):
        by_category.setdefault(name.split("/", 1)[0], []).append(name)
    for files in by_category.values():
        for i, name in enumerate(files):
            (tune if i % 2 == 0 else held).append(name)
    return tune, held
