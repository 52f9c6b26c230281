"""retrain's wiring, at the library level: which photos reach the fit, the distortions, the
out-of-fold validation figures, the accuracy gate and the bottleneck cache key. The pieces
(train, metrics, dataset, distort) have exact unit tests; these check what retraining.py
connects, with the expected values computed here from the photos we placed.

One small given layout (train/, validation/, test/ of real flowers-mini photos, so every
photo's split is known by construction) is retrained on the real MobileNet V1 embedding;
the bottlenecks are cached for the module, so each further run costs only the fit."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgtool.core.options import RetrainOptions
from imgtool.data import distortions, images
from imgtool.runtime import bottlenecks
from imgtool.training import l2_search
from imgtool.training.retraining import retrain

CLASSES = ["daisy", "roses"]
# photos by position in each class's sorted folder: train, validation, test
SPLITS = {"train": range(0, 8), "validation": range(8, 12), "test": range(12, 15)}


@pytest.fixture(scope="module")
def layout(flowers: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """root/{train,validation,test}/{daisy,roses}/; in validation/, one rose filed as a daisy
    and one daisy as a rose (so a head that saw them differs from one that did not).
    Returns the root, each photo's (split, label) and the embedding of every photo."""
    from imgtool.runtime.engine import LiteRTEngine

    root = tmp_path_factory.mktemp("wiring") / "flowers"
    truth: dict[str, tuple[str, int]] = {}
    for label, c in enumerate(CLASSES):
        photos = sorted((flowers / c).iterdir())
        for split, positions in SPLITS.items():
            for i in positions:
                filed = 1 - label if split == "validation" and i == 8 else label
                dest = root / split / CLASSES[filed] / photos[i].name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(photos[i], dest)
                truth[str(dest)] = (split, filed)
    embedder = flowers.parent / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    paths = sorted(truth)
    feats = LiteRTEngine(embedder).run(np.stack([images.decode(p, (224, 224)) for p in paths]))
    return {
        "root": root,
        "truth": truth,
        "features": dict(zip(paths, feats)),
        "embedder": str(embedder),
        "cache": tmp_path_factory.mktemp("wiring-bottlenecks"),
    }


def _options(layout: dict[str, Any], out: Path, **kw: Any) -> RetrainOptions:
    return RetrainOptions(
        image_dir=layout["root"],
        output=out,
        model=layout["embedder"],
        l2=0.01,
        bottleneck_dir=layout["cache"],
        tf_exports=False,
        **kw,
    )


def _photo_of(row: np.ndarray, layout: dict[str, Any]) -> str:
    """The one photo whose embedding this feature row is (exactly: the same backbone run)."""
    (path,) = [p for p, f in layout["features"].items() if np.allclose(f, row, rtol=0, atol=1e-6)]
    return path


class _Spy:
    """Records what retrain hands to train.select_and_fit and to the distortions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fits: list[dict[str, Any]] = []
        self.applied = 0
        self.distorted: list[str] = []
        real_fit, real_apply, real_decode = l2_search.select_and_fit, distortions.apply, images.decode_distorted

        def select_and_fit(x, y, n_classes, config, extra=None, **kw):  # noqa: ANN001, ANN202
            head, selection = real_fit(x, y, n_classes, config, extra=extra, **kw)
            self.fits.append({"x": x.copy(), "y": y.copy(), "extra": extra, "head": head, "selection": selection})
            return head, selection

        def apply(im, plan):  # noqa: ANN001, ANN202
            self.applied += 1
            return real_apply(im, plan)

        def decode_distorted(path, size, plan):  # noqa: ANN001, ANN202
            self.distorted.append(path)
            return real_decode(path, size, plan)

        monkeypatch.setattr(l2_search, "select_and_fit", select_and_fit)
        monkeypatch.setattr(distortions, "apply", apply)
        monkeypatch.setattr(images, "decode_distorted", decode_distorted)


def test_test_photos_stay_out_of_the_fit_and_distortions_run_once_per_copy(
    layout: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cross-validation and the refit see exactly the train + validation photos (the
    rows handed to select_and_fit are their embeddings; no test photo's), and with
    distortions each of them is decoded distorted `copies` times: distort.apply runs
    copies x (train + validation) times, never on a test photo. Planted changes this
    catches: the test photos joining the CV and the refit (`fit_mask = tr | va | te`);
    retrain's distorted copies decoded without distortion (`images.decode` instead of
    `images.decode_distorted`)."""
    spy = _Spy(monkeypatch)
    copies = 2
    res = retrain(_options(layout, tmp_path / "m", flip_left_right=True, distorted_copies=copies))
    assert res.output is not None
    fit_photos = sorted(p for p, (split, _) in layout["truth"].items() if split != "test")
    assert len(fit_photos) == 24
    (fit,) = spy.fits
    seen = [_photo_of(row, layout) for row in fit["x"]]
    assert sorted(seen) == fit_photos  # each train/validation photo once, no test photo
    assert [int(v) for v in fit["y"]] == [layout["truth"][p][1] for p in seen]  # labels as filed
    assert spy.applied == copies * len(fit_photos)
    assert sorted(spy.distorted) == sorted(fit_photos * copies)
    x_extra, y_extra, src = fit["extra"]
    assert len(x_extra) == copies * len(fit_photos)
    assert [int(v) for v in y_extra] == [layout["truth"][seen[i]][1] for i in src]  # a copy keeps its photo's label
    assert sorted(seen[i] for i in src) == sorted(fit_photos * copies)


def test_metrics_json_validation_figures_are_out_of_fold(
    layout: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """metrics.json's "validation" is scored on out-of-fold predictions (each validation photo
    by the cross-validation model that did not see it), not by the refit head, which was
    fitted on those very photos. The confusion matrix is rebuilt here, photo by photo, from
    the out-of-fold probabilities and the folders the photos were filed in. Planted change
    this catches: validation figures taken from the refit head (`pred[va]`)."""
    spy = _Spy(monkeypatch)
    out = tmp_path / "m"
    assert retrain(_options(layout, out)).output == out
    (fit,) = spy.fits
    seen = [_photo_of(row, layout) for row in fit["x"]]
    val = [i for i, p in enumerate(seen) if layout["truth"][p][0] == "validation"]
    assert len(val) == 8
    oof = fit["selection"].oof_probs[val].argmax(axis=1)
    refit = fit["head"].predict(fit["x"][val]).argmax(axis=1)
    assert (oof != refit).any()  # the two differ here, so the test can tell which was used
    cm = [[0, 0], [0, 0]]
    for i, p in zip(val, oof):
        cm[layout["truth"][seen[i]][1]][int(p)] += 1
    got = json.loads((out / "metrics.json").read_text())["validation"]
    assert got["confusion_matrix"] == cm
    assert got["count"] == 8 and got["accuracy"] == round((cm[0][0] + cm[1][1]) / 8, 4)


def test_min_accuracy_equal_to_the_accuracy_passes(layout: dict[str, Any], tmp_path: Path) -> None:
    """The gate refuses accuracy *below* `min_accuracy`: equal passes (and writes the model),
    a hair above is refused (and writes nothing). Planted change this catches: `<` made
    `<=` in retraining.retrain."""
    first = retrain(_options(layout, tmp_path / "a"))
    reached = first.metrics["test"]["accuracy"]
    truth = layout["truth"]
    test_photos = [p for p, (split, _) in truth.items() if split == "test"]
    assert first.metrics["test"]["count"] == len(test_photos) == 6
    wrong = {m["path"] for m in first.misclassified}
    assert reached == round((6 - len(wrong)) / 6, 4) and 0 < reached < 1  # so a hair above is possible
    equal = retrain(_options(layout, tmp_path / "b", min_accuracy=reached))
    assert equal.below_minimum is None and equal.output == tmp_path / "b" and (tmp_path / "b" / "head.npz").is_file()
    above = retrain(_options(layout, tmp_path / "c", min_accuracy=reached + 1e-4))
    assert above.below_minimum is not None and above.output is None and not (tmp_path / "c").exists()


def test_backbone_id_changes_with_input_size_and_value_range(
    tmp_path: Path, layout: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bottleneck cache key names the backbone's bytes and its preprocessing: another
    input size or value range is another key, so a rerun with a new `input_size` or
    `value_range` on the same cache computes new features instead of reusing the old ones.
    retrain keys the cache with the engine's input size and the model's value range.
    Planted change this catches: the key ignoring input size and value range."""
    model = tmp_path / "backbone.tflite"
    model.write_bytes(b"weights" * 100)
    other = tmp_path / "other.tflite"
    other.write_bytes(b"weights" * 99 + b"WEIGHTS")
    key = bottlenecks.backbone_id(model, (224, 224), (-1.0, 1.0))
    assert bottlenecks.backbone_id(model, (224, 224), (-1.0, 1.0)) == key  # stable
    keys = {
        key,
        bottlenecks.backbone_id(model, (192, 192), (-1.0, 1.0)),
        bottlenecks.backbone_id(model, (224, 192), (-1.0, 1.0)),
        bottlenecks.backbone_id(model, (224, 224), (0.0, 1.0)),
        bottlenecks.backbone_id(model, (224, 224), (-1.0, 0.5)),
        bottlenecks.backbone_id(model, (224, 224), None),
        bottlenecks.backbone_id(model, (224, 224), (-1.0, 1.0), extra="features:0"),
        bottlenecks.backbone_id(other, (224, 224), (-1.0, 1.0)),
    }
    assert len(keys) == 8
    calls: list[tuple] = []
    real = bottlenecks.backbone_id

    def spy(model_file, input_size, value_range, extra=""):  # noqa: ANN001, ANN202
        calls.append((Path(model_file), input_size, value_range))
        return real(model_file, input_size, value_range, extra=extra)

    monkeypatch.setattr(bottlenecks, "backbone_id", spy)
    opts = _options(layout, tmp_path / "m")
    retrain(replace(opts, l2=1.0))
    from imgtool.models.resolve import resolve

    backbone = resolve(layout["embedder"], purpose="features")
    assert calls == [(Path(layout["embedder"]), (224, 224), backbone.config.value_range)]


def test_a_bottleneck_put_is_read_back_by_the_next_run(tmp_path: Path) -> None:
    """Mutants this kills (mutmut, issue 21): `BottleneckCache.put`'s `write_error is not None`
    -> `is None` (nothing is ever written: every rerun recomputes every feature), its vector
    replaced by None, and its `dtype=np.float32` made None or dropped (float64 bytes, read
    back as twice as many float32 values)."""
    from imgtool.runtime.bottlenecks import BottleneckCache

    sha = "ab" * 32
    vector = np.linspace(-1.0, 1.0, 8)  # float64, as a backbone's dequantized output may be
    BottleneckCache("ident", root=tmp_path).put(sha, vector)
    later = BottleneckCache("ident", root=tmp_path)  # the next run
    assert later.has(sha)
    got = later.get(sha)
    assert got is not None and got.dtype == np.float32
    assert np.array_equal(got, vector.astype(np.float32))
