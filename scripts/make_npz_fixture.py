#!/usr/bin/env python3
"""Writes the GAN Dissection fixtures used by the tests of src/project/quantiles.rs.

Run with the project's venv (numpy only): `.venv/bin/python scripts/make_npz_fixture.py`.
Output goes to tests/fixtures/gandissect/ (about 25 KB in all):

  layer4/quantiles.npz        a RunningQuantile state, saved as gandissect does it
                              (`numpy.savez(path, **rq.state_dict())`), float32, by the
                              numpy running this script (numpy 2: pickle protocol 4,
                              `numpy._core.multiarray`)
  legacy_np1_proto3.npz       the same state as numpy 1.17-1.26 saves it (pickle protocol
                              3, `numpy.core.multiarray`)
  legacy_np1_proto2_f64.npz   the same state in float64, as numpy <= 1.16 saves it
                              (protocol 2: bytes pickled as `_codecs.encode(str, 'latin1')`)
  expected_quantiles.json     {"quantiles": [q], "levels": [[unit][q]], "depth", "size"}:
                              RunningQuantile.quantiles(q) recomputed here in float64
  dissect.json                a minimal gandissect dissect.json for layer4 (no levels.json,
                              so ganpaint's read_project must fall back to the .npz)

The state mimics RunningQuantile(resolution=64) after a few expansions: four levels with
capacities (`sizes`) 24, 32, 48, 64 holding 13, 0, 29 and 64 samples. The last level is
full, so its `[:, :firstfree].T` view is Fortran-contiguous and numpy pickles it with
`is_fortran = True` (column-major bytes), exactly as a real full level would be.

All sample values are distinct: gandissect sorts the summary with torch.sort, which is not
stable, so with tied values its quantiles depend on how torch happens to order the ties.
Here ties are broken by summary position (extremes, then level 0, 1, ...), as ganpaint
does. The saved extremes lie strictly outside every retained sample, except that unit 2
has a level-0 sample below the saved minimum: gandissect only folds level 0 into the
extremes when quantiles are read (`_scan_extremes`), so the reader must do the same.
"""

import io
import json
import os
import pickle
import zipfile

import numpy as np

OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "gandissect"
)
DEPTH = 6
RESOLUTION = 64
SIZES = [24, 32, 48, 64]
FIRSTFREE = [13, 0, 29, 64]
QUANTILES = [0.0, 0.01, 0.5, 0.99, 0.995, 0.999, 1.0]
LAYER = "layer4"


def unit_samples(rng, unit, count):
    """Draws `count` activations of one unit; each unit has its own distribution."""
    if unit == 0:
        x = rng.normal(0.0, 1.0, count)
    elif unit == 1:
        x = rng.lognormal(0.0, 0.5, count)
    elif unit == 2:
        x = rng.uniform(-1.0, 3.0, count)
    elif unit == 3:
        x = rng.exponential(0.7, count) - 0.2
    elif unit == 4:
        x = rng.normal(2.0, 0.5, count)
    else:
        x = np.where(rng.random(count) < 0.7, rng.normal(-0.5, 0.3, count), rng.normal(2.5, 0.4, count))
    return x.astype(np.float32)


def make_state():
    """A RunningQuantile.state_dict() look-alike (same keys, order and types)."""
    rng = np.random.default_rng(20190101)
    total = sum(FIRSTFREE)
    # Each unit's retained samples, plus samples seen earlier and since dropped (which
    # only survive in the extremes).
    retained = np.zeros((DEPTH, total), np.float32)
    extremes = np.zeros((DEPTH, 2), np.float32)
    for unit in range(DEPTH):
        while True:
            values = unit_samples(rng, unit, total)
            if len(np.unique(values)) == total:
                break
        retained[unit] = values
        dropped = unit_samples(rng, unit, 40)
        # Strictly outside the retained samples, so no extreme ties a sample.
        extremes[unit, 0] = min(dropped.min(), values.min()) - np.float32(0.125)
        extremes[unit, 1] = max(dropped.max(), values.max()) + np.float32(0.125)
    # Unit 2: a level-0 sample below the saved minimum (level 0 was never shifted).
    retained[2, 0] = extremes[2, 0] - np.float32(0.25)
    # Buffers as RunningQuantile keeps them: [depth, capacity], filled up to firstfree.
    buffers = []
    start = 0
    for size, free in zip(SIZES, FIRSTFREE):
        buf = np.zeros((DEPTH, size), np.float32)
        buf[:, :free] = retained[:, start : start + free]
        buffers.append(buf)
        start += free
    data = [buf[:, :free].T for buf, free in zip(buffers, FIRSTFREE)]
    return dict(
        constructor="netdissect.runningstats.RunningQuantile()",
        resolution=RESOLUTION,
        depth=DEPTH,
        buffersize=min(128, (RESOLUTION + 7) // 8),
        samplerate=1.0,
        data=data,
        sizes=[buf.shape[1] for buf in buffers],
        extremes=extremes,
        size=sum(free << level for level, free in enumerate(FIRSTFREE)),
    )


def object_array(levels):
    """What numpy < 1.24 made of `data` (a ragged list) in np.savez: a 1-D object
    array of the level arrays. numpy >= 1.24 refuses ragged lists, so build it here."""
    array = np.empty(len(levels), dtype=object)
    for i, level in enumerate(levels):
        array[i] = level
    return array


def gandissect_quantiles(state, quantiles):
    """RunningQuantile.quantiles(quantiles) for a state dict, in float64."""
    levels = list(state["data"])
    extremes = np.array(state["extremes"], dtype=np.float64)
    if levels[0].shape[0]:
        # _scan_extremes: level 0 was never folded into the extremes.
        extremes[:, 0] = np.minimum(extremes[:, 0], levels[0].min(axis=0))
        extremes[:, 1] = np.maximum(extremes[:, 1], levels[0].max(axis=0))
    # _weighted_summary: the extremes (weight 0), then level i's samples (weight 2^i).
    summary = np.concatenate([extremes] + [np.asarray(d, np.float64).T for d in levels], axis=1)
    weights = np.concatenate(
        [np.zeros(2)] + [np.full(d.shape[0], 2.0**i) for i, d in enumerate(levels)]
    )
    result = np.zeros((summary.shape[0], len(quantiles)))
    for unit in range(summary.shape[0]):
        order = np.argsort(summary[unit], kind="stable")
        values, w = summary[unit][order], weights[order]
        cum = (np.cumsum(w) - w / 2) / np.sum(w)
        result[unit] = np.interp(quantiles, cum, values)
    return result


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def legacy_object_npy(array, protocol):
    """An object array's .npy as numpy 1.x wrote it: its pickle names the numpy 1
    module `numpy.core.multiarray` (numpy 2 pickles otherwise byte-identically)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    payload = pickle.dumps(array, protocol=protocol)
    payload = payload.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"numpy._core" not in payload
    return header.getvalue() + payload


def write_legacy_npz(path, state, protocol):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for key, value in state.items():
            if key == "data":
                entry = legacy_object_npy(object_array(value), protocol)
            else:
                entry = npy_bytes(np.asanyarray(value))
            # A fixed date, as numpy.savez writes, so reruns give the same bytes.
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, entry)


def main():
    state = make_state()
    os.makedirs(os.path.join(OUT, LAYER), exist_ok=True)

    saved = dict(state, data=object_array(state["data"]))
    np.savez(os.path.join(OUT, LAYER, "quantiles.npz"), **saved)
    write_legacy_npz(os.path.join(OUT, "legacy_np1_proto3.npz"), state, protocol=3)
    as_f64 = dict(
        state,
        data=[d.astype(np.float64) for d in state["data"]],
        extremes=state["extremes"].astype(np.float64),
    )
    write_legacy_npz(os.path.join(OUT, "legacy_np1_proto2_f64.npz"), as_f64, protocol=2)

    # The reference, from the file as written (what a reader sees).
    loaded = np.load(os.path.join(OUT, LAYER, "quantiles.npz"), allow_pickle=True)
    assert loaded["data"].dtype == object and len(loaded["data"]) == len(SIZES)
    # The full last level is Fortran-contiguous, so numpy pickled it column-major.
    assert loaded["data"][3].flags["F_CONTIGUOUS"] and not loaded["data"][3].flags["C_CONTIGUOUS"]
    levels = gandissect_quantiles(loaded, QUANTILES)
    assert np.array_equal(levels, gandissect_quantiles(as_f64, QUANTILES))
    with open(os.path.join(OUT, "expected_quantiles.json"), "w") as f:
        json.dump(
            {
                "quantiles": QUANTILES,
                "levels": levels.tolist(),
                "depth": DEPTH,
                "size": int(loaded["size"]),
            },
            f,
            indent=1,
        )

    # gandissect's dissect.json for the layer: each unit's best concept and its level at
    # 1 - quantile_threshold (0.99); rankings score -iou, lower first.
    iou = [0.31, 0.02, 0.12, 0.0, 0.08, 0.22]
    labels = ["tree", "sky", "tree", "-", "sky", "tree"]
    level99 = gandissect_quantiles(loaded, [0.99])[:, 0]
    tree = [-v if l == "tree" else -v / 4 for v, l in zip(iou, labels)]
    sky = [-v if l == "sky" else -v / 5 for v, l in zip(iou, labels)]
    dissect = {
        "layers": [
            {
                "layer": LAYER,
                "units": [
                    {"unit": u, "iou": iou[u], "iou_label": labels[u], "level": float(level99[u])}
                    for u in range(DEPTH)
                ],
                "rankings": [
                    {"name": "tree-iou", "metric": "iou", "score": tree},
                    {"name": "sky-iou", "metric": "iou", "score": sky},
                ],
            }
        ]
    }
    with open(os.path.join(OUT, "dissect.json"), "w") as f:
        json.dump(dissect, f, indent=1)


if __name__ == "__main__":
    main()
