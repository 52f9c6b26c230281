"""audit, calibration and the open set end to end: flowers-mini with planted label errors,
near-duplicates and a byte-identical copy, the real MobileNet V1 embedding. One real
audit and one real retrain (the machine is shared); the rest reads what they wrote."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import invoke

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def plant(src: Path, dest: Path, seed: int = 0) -> dict[str, list]:
    """2 photos of each class moved into the next class's folder (10 label errors); 5
    photos saved again at 90% size, JPEG quality 75, beside their originals; one photo
    copied byte for byte under another name."""
    shutil.copytree(src, dest)
    rng = random.Random(seed)
    picks = [(i, rng.sample(sorted((dest / c).iterdir()), 2)) for i, c in enumerate(CLASSES)]
    moved = []
    for i, pick in picks:
        for f in pick:
            to = dest / CLASSES[(i + 1) % len(CLASSES)] / f"moved-{f.name}"
            f.rename(to)
            moved.append(to.relative_to(dest).as_posix())
    originals = sorted(p for p in dest.rglob("*.jpg") if not p.name.startswith("moved-"))
    pairs = []
    for f in rng.sample(originals, 5):
        with Image.open(f) as im:
            rgb = im.convert("RGB")
            w, h = rgb.size
            out = f.with_name(f.stem + "-copy.jpg")
            rgb.resize((round(w * 0.9), round(h * 0.9)), Image.BILINEAR).save(out, quality=75)
        pairs.append(sorted([f.relative_to(dest).as_posix(), out.relative_to(dest).as_posix()]))
    twin = sorted((dest / "daisy").iterdir())[3]
    shutil.copyfile(twin, dest / "daisy" / "twin-of-a-photo.jpg")
    return {"moved": moved, "pairs": pairs, "twin": [twin.relative_to(dest).as_posix(), "daisy/twin-of-a-photo.jpg"]}


@pytest.fixture(scope="module")
def planted(flowers: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    root = tmp_path_factory.mktemp("planted")
    truth = plant(flowers, root / "flowers")
    return root / "flowers", truth


def test_audit_finds_the_planted_errors_and_duplicates(
    planted: tuple[Path, dict], embedder: str, tmp_path: Path
) -> None:
    folder, truth = planted
    page = tmp_path / "audit.html"
    res = invoke(
        "audit", str(folder), "-m", embedder, "-f", "json", "-o", str(page), "--bottleneck-dir", str(tmp_path / "bn")
    )
    assert res.exit_code == 1, res.output  # it found something
    out = json.loads(res.stdout)
    assert set(out) == {"suspects", "duplicates", "outliers", "problems", "summary"}
    top20 = [s["rel"] for s in out["suspects"][:20]]
    hits = sum(r in truth["moved"] for r in top20)
    assert hits >= 7, (hits, top20)
    first = out["suspects"][0]
    assert set(first) == {"path", "rel", "label", "suggested", "score", "suggested_score", "split"}
    assert first["rel"] in truth["moved"] and first["label"] != first["suggested"]
    scores = [s["score"] for s in out["suspects"]]
    assert scores == sorted(scores)  # most suspicious (lowest probability of its label) first
    groups = [sorted(m["rel"] for m in g["members"]) for g in out["duplicates"]]
    found = sum(pair in groups for pair in truth["pairs"])
    assert found >= 4, groups
    twin = next(g for g in out["duplicates"] if sorted(m["rel"] for m in g["members"]) == sorted(truth["twin"]))
    assert twin["kind"] == "identical" and twin["similarity"] == 1.0 and not twin["leakage"]
    assert len({m["split"] for m in twin["members"]}) == 1  # byte-identical photos share a split
    false_groups = [g for g in groups if g not in truth["pairs"] and g != sorted(truth["twin"])]
    assert len(false_groups) <= 1, false_groups
    s = out["summary"]
    assert s["photos"] == 256 and s["classes"] == CLASSES and s["suspects"] == len(out["suspects"])
    assert s["duplicate_groups"] == len(out["duplicates"]) and s["cv_accuracy"] > 0.7
    html = page.read_text()
    assert html.count("data:image/jpeg;base64,") >= 20 and "Suspect labels" in html and "Duplicates" in html
    # warm: the features come from the cache; the text is one finding a line
    text = invoke("audit", str(folder), "-m", embedder, "--bottleneck-dir", str(tmp_path / "bn"))
    assert text.exit_code == 1 and "Computing" not in text.stderr
    assert text.stdout.splitlines()[1].startswith(f"suspects: {len(out['suspects'])} photos")
    assert f"  {first['rel']}: labelled {first['label']}" in text.stdout


def test_audit_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imgtool import api_training
    from imgtool.numbers import findings

    monkeypatch.setattr(
        api_training, "audit", lambda *a, **k: findings.AuditResult(summary={"photos": 4, "classes": ["a"]})
    )
    (tmp_path / "d").mkdir()
    res = invoke("audit", str(tmp_path / "d"), "-f", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["suspects"] == []
    res = invoke("audit", str(tmp_path / "d"), "--seed", "x")
    assert res.exit_code == 2
    page = tmp_path / "d" / "audit.html"
    res = invoke("audit", str(tmp_path / "d"), "-o", str(page), "-q")
    assert res.exit_code == 0 and "Nothing found." in page.read_text()
    (tmp_path / "file").write_text("")

    def never(*a, **k):  # noqa: ANN202
        raise AssertionError("the audit ran before the page was found unwritable")

    monkeypatch.setattr(api_training, "audit", never)
    res = invoke("audit", str(tmp_path / "d"), "-o", str(tmp_path / "file" / "audit.html"))
    assert res.exit_code == 4
    assert res.stderr.strip().splitlines() == [
        f"Error: cannot write the report {tmp_path / 'file' / 'audit.html'} ({tmp_path / 'file'}): Not a directory; "
        "choose another -o"
    ]


def test_retrain_is_calibrated_grouped_and_shows_suspects(
    planted: tuple[Path, dict], embedder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import imgtool

    folder, truth = planted
    out = tmp_path / "model"
    res = invoke("retrain", str(folder), "-m", embedder, "-o", str(out))
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    cal = m["calibration"]
    assert 0.3 < cal["temperature"] < 1.0  # label smoothing and class weights made it underconfident
    assert cal["ece_after"] < cal["ece_before"] and cal["ece_after"] <= 0.05
    assert f"calibration: temperature {cal['temperature']:.3g}" in res.stderr
    opens = m["open_set"]
    assert 0 < opens["min_score"] < 1 and opens["precision"] >= 0.95 and 0.3 < opens["accepted"] < 1
    # the split: the twin and its original together
    splits = {s["rel"]: s["split"] for s in m["suspects"]}
    assert len(m["suspects"]) == 10 and sum(r in truth["moved"] for r in splits) >= 4  # measured: 4
    assert all(v != "test" for v in splits.values())  # training photos only
    near = m["near_duplicates"]
    assert near["straddling"] == len(near["groups"]) and all(g["leakage"] for g in near["groups"])
    if near["groups"]:
        assert "straddle train and test" in res.stderr
    html = (out / "report.html").read_text()
    assert "Check these labels" in html and "Calibration" in html and "reliability diagram" in html
    assert "In plain words: of the" in html
    # head.npz is calibrated: its probabilities are the folded ones, on every photo
    model = imgtool.load_model(out)
    with np.load(out / "head.npz") as npz:
        assert npz["weights"].dtype == np.float32
    # --min-score auto: the suggested S; unknown in JSON lines
    res = invoke("classify", "-m", str(out), "--min-score", "auto", "-f", "jsonl", "-k", "1", str(folder / "roses"))
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert all("unknown" in r for r in records)
    assert {r["unknown"] for r in records} == {True, False}
    assert all(r["unknown"] == (r["predictions"][0]["score"] < opens["min_score"]) for r in records)
    assert f"--min-score auto: {opens['min_score']:g}" in res.stderr
    assert model.suggested_min_score == opens["min_score"]
    # the library: min_score on Model.classify
    photos = sorted((folder / "roses").iterdir())[:6]
    judged = model.classify(photos, top_k=1, min_score=0.9)
    assert [r.unknown for r in judged] == [r.predictions[0].score < 0.9 for r in judged]
    assert all(r.unknown is None for r in model.classify(photos, top_k=1))
    assert [r.unknown for r in model.classify(photos, top_k=1, min_score="auto")] == [r["unknown"] for r in records[:6]]
    with pytest.raises(imgtool.UsageError, match=r"^min_score 1\.5: give a score between 0 and 1, or auto$"):
        model.classify(photos, min_score=1.5)
    # evaluate reports the ECE
    ev = invoke("evaluate", "-m", str(out), str(folder), "-f", "json")
    got = json.loads(ev.stdout)["calibration"]
    assert 0 <= got["ece"] < 0.2 and sum(b["count"] for b in got["reliability"]) == 256
    # a model folder from before calibration loads, says so, and has no suggested S
    old = tmp_path / "old"
    shutil.copytree(out, old)
    stale = {k: v for k, v in m.items() if k not in ("calibration", "open_set")}
    (old / "metrics.json").write_text(json.dumps(stale))
    with caplog.at_level("INFO", logger="imgtool"):
        assert imgtool.load_model(old).suggested_min_score is None
    assert "scores: they are uncalibrated" in caplog.text
    res = invoke("classify", "-m", str(old), "--min-score", "auto", str(folder / "roses"))
    assert res.exit_code == 2 and "records no suggested minimum score" in res.stderr
