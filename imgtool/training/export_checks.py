"""An export's checks on the test split: the photos retrain held out (the same layout and
split rule), the exported file's accuracy on them, and its agreement with imgtool's own
two-step run of the folder (backbone engine, then head.npz), kept per exported bytes.

Layer: the work (reads through retrained.py; checks with convert.agreement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imgtool.core import files, store
from imgtool.models.convert import agreement
from imgtool.models.retrained import RetrainedRecord


def split_photos(
    folder: Path, meta: RetrainedRecord, metrics: dict[str, Any]
) -> tuple[list[tuple[str, int]], list[str], str | None]:
    """(test photos [(path, label)], training photo paths, why not) from the recorded image
    folder, held-out folders and split percentages: the same layout and split rule as
    retrain (dataset.find_layout, dataset.assign_splits)."""
    from imgtool.core.errors import ImgtoolError
    from imgtool.core.records import BadRecord
    from imgtool.data import folders, splits

    image_dir = Path(meta.image_dir or "")
    if not meta.image_dir or not image_dir.is_dir():
        return [], [], f"the training photos are not at {image_dir} any more"
    try:
        split = splits.StoredSplit.from_dict(metrics.get("options") or {}, "options.")
        found = folders.find_layout(image_dir, split.validation_dir, split.test_dir)
    except (ImgtoolError, BadRecord) as err:
        return [], [], f"the training photos cannot be read as they were ({err})"
    if found.classes != meta.classes:
        return [], [], f"the classes in {image_dir} are not the model's any more"
    skipped = {s.get("path") for s in metrics.get("skipped") or []}
    photos = [f for f in found.photos if f.path not in skipped]
    samples = splits.assign_splits(
        photos, len(found.classes), split.validation_percent, split.test_percent, content=splits.content_hashes(photos)
    )
    test = [(s.path, s.label) for s in samples if s.split == "test"]
    train = sorted((s for s in samples if s.split == "train"), key=lambda s: s.rel)
    return test, [s.path for s in train], None


def decode_all(paths: list[str], size: tuple[int, int]) -> tuple[np.ndarray, list[int]]:
    """The photos that decode, at `size` ([N, H, W, 3] uint8), and their positions in `paths`."""
    from imgtool.core.errors import ImageError
    from imgtool.data import images

    arrays, kept = [], []
    for i, p in enumerate(paths):
        try:
            arrays.append(images.decode(p, size))
            kept.append(i)
        except ImageError:
            continue
    return (np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)), kept


def engine_for(path: Path) -> Any:
    """imgtool's engine for an exported file: the value range from its metadata."""
    from imgtool.runtime.engine import LiteRTEngine
    from imgtool.tflite import reading

    return LiteRTEngine(path, reading.file_value_range(path).get("value_range"))


def _accuracy(path: Path, photos: np.ndarray, labels: np.ndarray) -> tuple[float | None, np.ndarray]:
    if not len(photos):
        return None, np.zeros((0, 0), np.float32)
    probs = engine_for(path).run(photos)
    return round(float(np.mean(probs.argmax(axis=1) == labels)), 4), probs


def _two_step(folder: Path, meta: RetrainedRecord, photos: np.ndarray) -> np.ndarray | None:
    """Probabilities from imgtool's own run of the folder: backbone, then head.npz."""
    if not len(photos):
        return None
    from imgtool.numbers.scores import softmax
    from imgtool.runtime.engine import HeadEngine, LiteRTEngine

    bb = folder / meta.backbone.file
    if bb.suffix != ".tflite" or not bb.is_file():
        return None
    with np.load(folder / meta.head, allow_pickle=False) as npz:
        engine = HeadEngine(LiteRTEngine(bb, meta.value_range), npz["weights"], npz["bias"])
    return softmax(engine.run(photos))


class Checks:
    """An export's test-split figures (accuracy, and agreement with imgtool's own
    two-step run), computed from the exported bytes and the test photos. They depend on
    nothing else, so they are kept under a key of the file's bytes, the folder's backbone
    and head, and the test photos' contents and labels: an identical rerun (same photos,
    same seed: the same bytes) reuses them instead of decoding and running the test split
    twice more. Photos are decoded only on a miss."""

    def __init__(self, folder: Path, meta: RetrainedRecord, test: list[tuple[str, int]]):
        self.folder, self.meta, self.test = folder, meta, test
        self._photos: tuple[np.ndarray, np.ndarray] | None = None
        self._reference: np.ndarray | None = None
        self._reference_done = False
        self._base: str | None = None

    def _photo_set(self) -> tuple[np.ndarray, np.ndarray]:
        if self._photos is None:
            photos, kept = decode_all([p for p, _ in self.test], self.meta.input_size)
            self._photos = photos, np.array([self.test[i][1] for i in kept], dtype=np.int64)
        return self._photos

    def _key(self, data: bytes) -> str | None:
        import hashlib

        if self._base is None:
            h = hashlib.sha256()
            try:
                bb = self.folder / self.meta.backbone.file
                h.update(bb.read_bytes() if bb.is_file() else b"-")
                with np.load(self.folder / self.meta.head, allow_pickle=False) as npz:  # its arrays: the
                    for name in ("weights", "bias"):  # .npz's own bytes carry zip timestamps
                        h.update(name.encode() + np.ascontiguousarray(npz[name], dtype=np.float32).tobytes())
                for path, label in self.test:
                    with files.open_regular(path) as fh:  # a FIFO among the photos cannot hang the export
                        h.update(f"{label}\0".encode() + hashlib.sha256(fh.read()).digest())
            except (OSError, files.FileProblem):
                return None  # a photo that cannot be read: no key, compute (and report) as usual
            self._base = h.hexdigest()
        return hashlib.sha256(self._base.encode() + hashlib.sha256(data).digest()).hexdigest()[:32]

    def of(self, data: bytes, path: Path) -> tuple[float | None, float | None, float | None, int]:
        """(test accuracy, max probability difference and top-1 agreement with the two-step
        run, number of test photos) of the exported file at `path`, whose bytes are `data`."""
        key = self._key(data) if self.test else None
        cache = store.home() / "exports" / "checks" / f"{key}.json"
        if key is not None:
            hit = store.read_json(cache)
            if hit:
                return hit["accuracy"], hit["max_diff"], hit["agreement"], int(hit["count"])
        photos, labels = self._photo_set()
        acc, probs = _accuracy(path, photos, labels)
        if not self._reference_done:
            self._reference, self._reference_done = _two_step(self.folder, self.meta, photos), True
        diff = agree = None
        if self._reference is not None and len(probs):
            check = agreement(probs, self._reference)
            diff = round(check.max_diff, 6)
            agree = round(check.top1, 4) if check.top1 is not None else None
        if key is not None:
            try:
                store.atomic_write_json(
                    cache, {"accuracy": acc, "max_diff": diff, "agreement": agree, "count": len(labels)}
                )
            except OSError:
                pass  # the cache is an optimisation; the figures are right either way
        return acc, diff, agree, len(labels)
