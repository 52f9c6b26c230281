"""Model references: handles and URLs, labels found beside a model, catalog records."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from imgtool.core.errors import ModelError, UsageError
from imgtool.models import refs, resolve
from imgtool.models.catalog import load_catalog
from tests.conftest import invoke


def test_hub_and_kaggle_handles_map_to_archive_urls() -> None:
    assert (
        refs.hub_handle_url("google/imagenet/inception_v3/classification/5")
        == "https://tfhub.dev/google/imagenet/inception_v3/classification/5?tf-hub-format=compressed"
    )
    assert (
        refs.kaggle_handle_url("google/inception-v3/tensorFlow2/classification/2")
        == "https://www.kaggle.com/api/v1/models/google/inception-v3/tensorFlow2/classification/2/download"
    )
    assert (
        refs.page_to_download("https://www.kaggle.com/models/google/mobilenet-v2/tensorFlow2/100-224-classification/2")
        == "https://www.kaggle.com/api/v1/models/google/mobilenet-v2/tensorFlow2/100-224-classification/2/download"
    )
    with pytest.raises(UsageError):
        refs.kaggle_handle_url("google/inception-v3")
    from imgtool.models.download import hub_download_url

    assert hub_download_url("https://tfhub.dev/a/b/1") == "https://tfhub.dev/a/b/1?tf-hub-format=compressed"
    assert hub_download_url("https://example.test/m.tar.gz") == "https://example.test/m.tar.gz"


def test_catalog_records_are_complete() -> None:
    catalog = load_catalog()
    assert {"inception_v3", "inception_v3_feature_vector", "inception_v3_2015", "mobilenet_v2"} <= set(catalog)
    for name, cfg in catalog.items():
        if cfg.embedded:  # ships in the package: pinned, uint8 input (no value range), labels in its metadata
            assert cfg.sha256 and cfg.size and cfg.input_size and cfg.output and not cfg.urls, name
            continue
        assert cfg.urls and cfg.input_size and cfg.value_range and cfg.output, name
        if cfg.output != "features":
            assert cfg.labels is not None, name
        if cfg.features:
            assert catalog[cfg.features].output == "features" or cfg.format == "graphdef", name
    v3 = catalog["inception_v3"]
    assert v3.input_size == (299, 299) and v3.value_range == (0.0, 1.0) and v3.output == "logits"
    assert v3.urls[0].startswith("https://tfhub.dev/google/imagenet/inception_v3/classification/5")
    old = catalog["inception_v3_2015"]
    assert (old.input_tensor, old.output_tensor, old.feature_tensor) == ("Mul:0", "softmax:0", "pool_3:0")


def test_bad_catalog_override_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    monkeypatch.setenv("IMGTOOL_CATALOG", str(bad))
    res = invoke("labels")
    assert res.exit_code == 3 and "not a valid catalog file" in res.stderr
    bad.write_text(json.dumps({"models": {"x": {"format": "onnx"}}}))
    assert "format must be one of" in invoke("labels", "-m", "x").stderr


def test_labels_beside_a_tflite(fixtures: Path, tmp_path: Path) -> None:
    """A .tflite without metadata takes labels.txt from its folder."""
    src = fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
    data = src.read_bytes()
    import zipfile

    with zipfile.ZipFile(src) as zf:  # strip the appended metadata zip
        start = min(info.header_offset for info in zf.infolist())
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(data[:start])
    assert not zipfile.is_zipfile(plain)
    res = invoke("labels", "-m", str(plain))
    assert res.exit_code == 3 and "carries no labels" in res.stderr
    shutil.copy(fixtures / "imagenet" / "imagenet_labels.txt", tmp_path / "labels.txt")
    res = invoke("classify", "-m", str(plain), "-f", "jsonl", str(fixtures / "imagenet" / "images" / "parrot.jpg"))
    assert json.loads(res.stdout)["predictions"][0]["label"] == "macaw"


def test_unknown_model_suggests_a_near_name() -> None:
    with pytest.raises(ModelError, match="did you mean inception_v3"):
        resolve.resolve("inception_v4")
