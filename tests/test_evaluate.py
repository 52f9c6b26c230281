"""evaluate: says how many of the photos it is given the model was trained on (by content
hash, recorded by retrain in training-photos.txt), and lists failures by path."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import invoke, run

CLASSES = ["daisy", "roses", "tulips"]


@pytest.fixture(scope="module")
def embedder(fixtures: Path) -> str:
    return str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _copy(fixtures: Path, dest: Path, start: int, stop: int) -> Path:
    for c in CLASSES:
        (dest / c).mkdir(parents=True)
        for f in sorted((fixtures / "flowers-mini" / c).iterdir())[start:stop]:
            shutil.copy(f, dest / c / f.name)
    return dest


@pytest.mark.heavy
def test_training_photos_recorded_and_counted_by_evaluate(fixtures: Path, embedder: str, tmp_path: Path) -> None:
    data = _copy(fixtures, tmp_path / "train", 0, 8)
    model = tmp_path / "m"
    res = invoke("retrain", str(data), "-m", embedder, "-o", str(model), "-f", "json")
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    n_fit = m["train"]["count"] + m["validation"]["count"]
    assert m["test"]["count"] == 24 - n_fit and m["test"]["count"] >= 3

    record = json.loads((model / "imgtool-model.json").read_text())
    assert record["training_photos"]["file"] == "training-photos.txt"
    assert record["training_photos"]["count"] == n_fit
    lines = (model / "training-photos.txt").read_text().splitlines()
    assert lines == sorted(set(lines)) and len(lines) == n_fit
    all_photos = {_sha(p): p for p in data.rglob("*.jpg")}
    assert set(lines) <= set(all_photos)  # train + validation photos; the test photos are not in it
    held_out = [all_photos[s] for s in set(all_photos) - set(lines)]
    assert len(held_out) == m["test"]["count"]

    ev = invoke("evaluate", "-m", str(model), str(data), "-f", "json")
    assert ev.exit_code == 0, ev.output
    out = json.loads(ev.stdout)
    assert out["seen_in_training"] == n_fit and out["failures"] == [] and "failed_inputs" not in out
    assert (
        f"warning: {n_fit} of the 24 photos evaluated were used to train this model (its train/validation "
        "photos, by content); accuracy on them is optimistic - evaluate on photos it has not seen"
    ) in ev.stderr

    # new photos, one renamed copy of a training photo, one held-out photo, one broken file
    fresh = _copy(fixtures, tmp_path / "fresh", 30, 33)
    trained = all_photos[lines[0]]
    shutil.copy(trained, fresh / trained.parent.name / "renamed-copy.jpg")
    shutil.copy(held_out[0], fresh / held_out[0].parent.name / "held-out.jpg")
    (fresh / "daisy" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    text = run("evaluate", "-m", str(model), str(fresh))
    assert text.returncode == 1  # the broken file
    assert "warning: 1 of the 11 photos evaluated was used to train this model" in text.stderr
    assert "Traceback" not in text.stderr
    js = json.loads(run("evaluate", "-m", str(model), str(fresh), "-f", "json").stdout)
    assert js["seen_in_training"] == 1 and js["count"] == 11
    assert [f["path"] for f in js["failures"]] == [str(fresh / "daisy" / "broken.jpg")]
    assert js["failures"][0]["error"]

    unseen = _copy(fixtures, tmp_path / "unseen", 40, 42)
    quiet = invoke("evaluate", "-m", str(model), str(unseen), "-f", "json")
    assert json.loads(quiet.stdout)["seen_in_training"] == 0 and "used to train" not in quiet.stderr

    # a model folder that records no training photos (written before they were kept): null, no warning
    del record["training_photos"]
    (model / "imgtool-model.json").write_text(json.dumps(record))
    old = invoke("evaluate", "-m", str(model), str(data), "-f", "json")
    assert json.loads(old.stdout)["seen_in_training"] is None and "used to train" not in old.stderr


@pytest.mark.heavy
def test_evaluate_folder_library_result(fixtures: Path, embedder: str, tmp_path: Path) -> None:
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve
    from imgtool.training.evaluation import Evaluation, evaluate_folder

    data = _copy(fixtures, tmp_path / "d", 0, 4)
    assert invoke("retrain", str(data), "-m", embedder, "-o", str(tmp_path / "m"), "-q").exit_code == 0
    clf = Classifier(resolve(str(tmp_path / "m")))
    ev = evaluate_folder(clf, data)
    assert isinstance(ev, Evaluation)
    assert ev.metrics["count"] == 12 and ev.failures == []
    assert ev.seen_in_training == len((tmp_path / "m" / "training-photos.txt").read_text().split())
    some = {_sha(p) for p in sorted(data.rglob("*.jpg"))[:5]}
    assert evaluate_folder(clf, data, training=some).seen_in_training == 5  # an explicit set wins
    assert evaluate_folder(clf, data, training=set()).seen_in_training == 0


@pytest.fixture(scope="module")
def two_imagenet_classes(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """daisy/ and macaw/ (both ImageNet labels) holding the four sample photos: MobileNet V2
    says daisy for sunflower.bmp and macaw for parrot.jpg (right), military uniform for
    grace_hopper.bmp and Egyptian cat for cat.bmp (labels of neither folder)."""
    root = tmp_path_factory.mktemp("two") / "set"
    for cls, names in {"daisy": ["sunflower.bmp", "grace_hopper.bmp"], "macaw": ["parrot.jpg", "cat.bmp"]}.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(fixtures / "imagenet" / "images" / n, root / cls / n)
    return root


def test_a_label_outside_the_folders_classes_is_counted_as_other(mobilenet: str, two_imagenet_classes: Path) -> None:
    """A prediction that is none of the folder's classes goes to an "(other)" column, never to
    a class. By hand: daisy row [1, 0, 1], macaw row [0, 1, 1], accuracy 2/4. Planted change
    this catches: such a label counted as class 0 (`inverse.get(top.index, 0)`)."""
    from imgtool.inference.classifier import Classifier
    from imgtool.models.resolve import resolve
    from imgtool.training.evaluation import evaluate_folder

    ev = evaluate_folder(Classifier(resolve(mobilenet)), two_imagenet_classes)
    assert ev.classes == ["daisy", "macaw", "(other)"]
    assert ev.confusion == [[1, 0, 1], [0, 1, 1], [0, 0, 0]]
    assert ev.accuracy == 0.5
    assert sorted((Path(m["path"]).name, m["true"], m["predicted"]) for m in ev.misclassified) == [
        ("cat.bmp", "macaw", "Egyptian cat"),
        ("grace_hopper.bmp", "daisy", "military uniform"),
    ]
    assert ev.per_class["daisy"]["recall"] == 0.5 and ev.per_class["daisy"]["precision"] == 1.0


def test_evaluate_min_accuracy_equal_to_the_accuracy_passes(mobilenet: str, two_imagenet_classes: Path) -> None:
    """--min-accuracy refuses accuracy below X: at exactly the accuracy (0.5 here) it passes.
    Planted change this catches: `<` made `<=` in the evaluate command's gate."""
    equal = invoke("evaluate", "-m", mobilenet, str(two_imagenet_classes), "--min-accuracy", "0.5", "-q")
    assert equal.exit_code == 0, equal.output
    above = invoke("evaluate", "-m", mobilenet, str(two_imagenet_classes), "--min-accuracy", "0.5001", "-q")
    assert above.exit_code == 1
    assert above.stderr.strip().splitlines()[-1].startswith("Error: accuracy 50.0% is below --min-accuracy ")
