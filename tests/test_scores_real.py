"""On the shared quantized MobileNet V2 (a uint8 softmax with TFLite metadata): a photo's
score is the model's own, the same alone, in a folder, and at any batch size."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import imgtool
from tests.conftest import invoke, run

DAISY_PHOTOS = ("10841136265_af473efc60.jpg", "11023272144_fce94401f2_m.jpg", "11023277956_8980d53169_m.jpg")
# The model's own top-1 for each photo alone (resized to 224x224, bilinear), as LiteRT
# gives it: quantized to steps of 1/256.
TOP1 = {
    "cat.bmp": ("Egyptian cat", 202 / 256),
    "grace_hopper.bmp": ("military uniform", 236 / 256),
    "parrot.jpg": ("macaw", 255 / 256),
    "sunflower.bmp": ("daisy", 253 / 256),
    "10841136265_af473efc60.jpg": ("daisy", 254 / 256),
    "11023272144_fce94401f2_m.jpg": ("daisy", 255 / 256),
    # 159x240, upscaled to 224x224: Pillow 12.3 (the pinned line) gives 255/256; Pillow 13 gave 254/256
    "11023277956_8980d53169_m.jpg": ("daisy", 255 / 256),
}


@pytest.fixture(scope="module")
def daisy(fixtures: Path) -> Path:
    return fixtures / "flowers-mini" / "daisy"


def _jsonl(result) -> dict[str, list[tuple[int, str, float]]]:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    out = {}
    for line in result.stdout.splitlines():
        rec = json.loads(line)
        out[rec["path"]] = [(p["index"], p["label"], p["score"]) for p in rec["predictions"]]
    return out


def _csv_top1(text: str) -> dict[str, tuple[str, str]]:
    return {
        Path(r["path"]).name: (r["label"], r["score"]) for r in csv.DictReader(io.StringIO(text)) if r["rank"] == "1"
    }


def test_output_kind_comes_from_the_metadata_and_graph(mobilenet: str) -> None:
    from imgtool.numbers.scores import decide_output_kind
    from imgtool.runtime.engine import LiteRTEngine

    facts = LiteRTEngine(Path(mobilenet)).output_facts()
    assert facts.producer == "SOFTMAX"
    assert (facts.dtype, facts.quantization, facts.shape) == ("uint8", (0.00390625, 0), (1, 1001))
    assert facts.metadata == "probability: Probabilities of the labels respectively."
    d = decide_output_kind(None, facts)
    assert d.kind == "probabilities" and "TFLite metadata" in d.reason
    # without its metadata, the graph says the same
    import dataclasses

    assert (
        decide_output_kind(None, dataclasses.replace(facts, metadata=None)).reason == "the graph's last op is SOFTMAX"
    )


def test_metadata_names_the_labels_file(mobilenet: str) -> None:
    from imgtool.tflite import reading

    meta = reading.output_metadata(Path(mobilenet), 0)
    assert meta is not None and (meta.name, meta.description) == (
        "probability",
        "Probabilities of the labels respectively.",
    )
    assert meta.label_files == ("imagenet_labels.txt",)
    assert reading.output_metadata(Path(mobilenet), 1) is None


def _top5(results: list) -> dict[str, list[tuple[int, str, float]]]:  # noqa: ANN001
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    return {r.path: [(p.index, p.label, p.score) for p in r.predictions] for r in results}


def test_each_photo_scores_the_same_alone_in_a_folder_and_at_any_batch_size(
    mobilenet: str, photos: Path, daisy: Path
) -> None:
    model = imgtool.load_model(mobilenet)
    alone = {}
    for p in [*sorted(photos.iterdir()), *(daisy / n for n in DAISY_PHOTOS)]:
        alone.update(_top5(model.classify(str(p), top_k=5)))
    for name, (label, score) in TOP1.items():
        path = next(p for p in alone if Path(p).name == name)
        assert alone[path][0][1:] == (label, round(score, 6)), name
    for bs in (1, 3, 8):
        together = _top5(model.classify([str(photos), str(daisy)], top_k=5, batch_size=bs))
        assert len(together) == 4 + 50
        for path, preds in alone.items():
            assert together[path] == preds, (bs, path)
    # the CLI prints the same numbers
    assert _jsonl(invoke("classify", "-m", mobilenet, "-f", "jsonl", "-k", "5", "--batch-size", "3", str(photos))) == {
        p: v for p, v in alone.items() if Path(p).parent == photos
    }


def test_csv_top1_on_the_daisy_folder_equals_the_single_photo_runs(mobilenet: str, daisy: Path) -> None:
    """The bug of issue 8: daisy 0.0027 for every photo in the folder, 0.992 alone."""
    folder = invoke("classify", "-m", mobilenet, "-k1", "-f", "csv", str(daisy))
    assert folder.exit_code == 0
    in_folder = _csv_top1(folder.stdout)
    assert len(in_folder) == 50
    for name in DAISY_PHOTOS:
        single = _csv_top1(invoke("classify", "-m", mobilenet, "-k1", "-f", "csv", str(daisy / name)).stdout)
        assert in_folder[name] == single[name] == ("daisy", f"{TOP1[name][1]:.6f}")
    # the model's own probabilities, never renormalized: a 1/256 step each
    for _label, score in in_folder.values():
        assert float(score) * 256 == pytest.approx(round(float(score) * 256), abs=1e-3)


def test_subprocess_csv_on_the_folder(mobilenet: str, daisy: Path) -> None:
    result = run("classify", "-m", mobilenet, "-k1", "-f", "csv", str(daisy))
    assert result.returncode == 0, result.stderr
    assert _csv_top1(result.stdout)["10841136265_af473efc60.jpg"] == ("daisy", "0.992188")


def test_scores_logits_override_applies_softmax_to_the_outputs(mobilenet: str, photos: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from imgtool.data import images
    from imgtool.numbers.scores import softmax

    it = Interpreter(model_path=mobilenet)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.set_tensor(inp["index"], images.decode(str(photos / "parrot.jpg"), (224, 224))[None])
    it.invoke()
    raw = it.get_tensor(out["index"]).astype(np.float64) / 256.0
    want = softmax(raw)[0]
    pred = imgtool.load_model(mobilenet, scores="logits").classify(photos / "parrot.jpg", top_k=1)[0].predictions[0]
    assert pred.index == 89 and pred.score == pytest.approx(float(want[89]), abs=2e-6)
    assert pred.score < 0.003  # what the old sum-based guess printed for every photo of a folder
    probs = imgtool.classify(photos / "parrot.jpg", model=mobilenet, scores="probabilities", top_k=1)[0].predictions[0]
    assert probs.score == round(float(raw[0, 89]), 6) == 0.996094
    # the CLI's --scores is the same parameter
    result = invoke("classify", "-m", mobilenet, "--scores", "logits", "-k1", "-f", "jsonl", str(photos / "parrot.jpg"))
    assert json.loads(result.stdout)["predictions"][0]["score"] == pred.score


def test_verbose_says_how_the_outputs_are_read(mobilenet: str, photos: Path) -> None:
    result = invoke("classify", "-v", "-m", mobilenet, str(photos / "cat.bmp"))
    assert result.exit_code == 0
    assert (
        f"{mobilenet}: 1001 outputs, read as probabilities (its TFLite metadata describes the output as "
        "'probability: Probabilities of the labels respectively.')"
    ) in result.stderr
    forced = invoke("classify", "-v", "--scores", "logits", "-m", mobilenet, str(photos / "cat.bmp"))
    assert f"{mobilenet}: 1001 outputs, read as logits (--scores logits)" in forced.stderr
    assert "read as" not in invoke("classify", "-m", mobilenet, str(photos / "cat.bmp")).stderr
    from importlib.metadata import version

    # the versions that made the score besides the model: Pillow resizes, LiteRT runs it
    assert f"scores made with Pillow {version('pillow')} and LiteRT {version('ai-edge-litert')}\n" in result.stderr


def test_bad_scores_value_is_a_usage_error(mobilenet: str, photos: Path) -> None:
    result = invoke("classify", "--scores", "softmax", "-m", mobilenet, str(photos / "cat.bmp"))
    assert result.exit_code == 2
    assert "'softmax' is not one of 'auto', 'probabilities', 'logits'" in result.stderr


FEATURES_MSG = (
    "Error: {ref} is a feature extractor (1024-wide feature vectors), not a classifier; train a classifier "
    "on it with `imgtool retrain FOLDER -m MODEL`, or pick a classifier (`imgtool models list`)\n"
)


def test_feature_extractor_is_exit_2_one_line(fixtures: Path, photos: Path) -> None:
    ref = str(fixtures / "embedding" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    result = invoke("classify", "-m", ref, str(photos / "cat.bmp"))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == FEATURES_MSG.format(ref=ref)
    ev = invoke("evaluate", "-m", ref, str(fixtures / "flowers-mini"))
    assert ev.exit_code == 2 and ev.stderr == FEATURES_MSG.format(ref=ref)
    sub = run("classify", "-m", ref, str(photos / "cat.bmp"))
    assert sub.returncode == 2
    assert sub.stderr == FEATURES_MSG.format(ref=ref)
    # told it is a classifier (--scores), it classifies: the user's call
    forced = invoke("classify", "-m", ref, "--scores", "logits", "-k1", "-f", "jsonl", str(photos / "cat.bmp"))
    assert forced.exit_code == 0
    assert json.loads(forced.stdout)["predictions"][0]["label"].startswith("class ")


def test_evaluate_scores_option(mobilenet: str, fixtures: Path, tmp_path: Path) -> None:
    """evaluate reads the model the same way; --scores is accepted and reported."""
    folder = tmp_path / "set"
    (folder / "daisy").mkdir(parents=True)
    for name in DAISY_PHOTOS:
        (folder / "daisy" / name).symlink_to(fixtures / "flowers-mini" / "daisy" / name)
    result = invoke("evaluate", "-m", mobilenet, "-v", "--scores", "probabilities", "-f", "json", str(folder))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == 1.0
    assert f"{mobilenet}: 1001 outputs, read as probabilities (--scores probabilities)" in result.stderr


def test_embedded_labels_file_is_the_one_the_metadata_names(mobilenet: str, tmp_path: Path) -> None:
    """A model whose zip also holds a `labels.txt` (a usual name, listed first): the
    metadata's TENSOR_AXIS_LABELS file `imagenet_labels.txt` is the one read."""
    import zipfile

    from imgtool.data.labels import embedded_tflite_labels

    data = Path(mobilenet).read_bytes()
    with zipfile.ZipFile(mobilenet) as zf:
        start = min(i.header_offset for i in zf.infolist())
        right = zf.read("imagenet_labels.txt")
    copy = tmp_path / "model.tflite"
    copy.write_bytes(data[:start])  # the flatbuffer alone, metadata included
    with zipfile.ZipFile(copy, "a") as zf:
        zf.writestr("labels.txt", "wrong\n" * 1001)
        zf.writestr("imagenet_labels.txt", right)
    with zipfile.ZipFile(copy) as zf:
        assert zf.namelist() == ["labels.txt", "imagenet_labels.txt"]
    labels = embedded_tflite_labels(copy)
    assert labels is not None and labels[89] == "macaw" and len(labels) == 1001
