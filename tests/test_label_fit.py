"""Labels must fit the outputs (known at load), and --expect must name a label the model has."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgtool.core.errors import ModelError, UsageError
from imgtool.data.labels import BACKGROUND_LABELS, check_expected, closest, fit, has_label, parse_lines, read_lines
from tests.conftest import invoke, run

# ---------------------------------------------------------------------------- fit


def test_equal_counts_fit_as_they_are() -> None:
    labels = ["a", "b", "c"]
    out = fit(labels, 3, ref="m")
    assert out == ["a", "b", "c"] and out is not labels
    assert fit(["background", "b", "c"], 3, ref="m") == ["background", "b", "c"]  # kept: it is output 0


@pytest.mark.parametrize(
    "first", ["background", "unused", "???", "__background__", "Background", "  UNUSED  ", "__BACKGROUND__"]
)
def test_one_more_label_with_a_background_first_line_drops_it(first: str) -> None:
    assert fit([first, "a", "b"], 2, ref="m") == ["a", "b"]


def test_background_names() -> None:
    assert BACKGROUND_LABELS == ("background", "unused", "???", "__background__")


def test_one_more_label_without_background_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"^m: the model's own labels do not fit it: 3 labels for 2 outputs"):
        fit(["cat", "a", "b"], 2, ref="m")


def test_one_fewer_label_names_output_0_background_so_indexes_keep(fixtures: Path) -> None:
    assert fit(["a", "b"], 3, ref="m") == ["background", "a", "b"]
    full = (fixtures / "imagenet" / "imagenet_labels.txt").read_text().splitlines()
    assert len(full) == 1001 and full[0] == "background"
    fitted = fit(full[1:], 1001, ref="m")  # the usual 1000-line ImageNet file
    assert fitted == full
    assert fitted[89] == "macaw" and fitted[1] == "tench, Tinca tinca" and fitted[1000] == full[1000]


@pytest.mark.parametrize("n, width", [(0, 1001), (0, 1), (7, 1001), (999, 1001), (1003, 1001), (1002, 1001), (1, 3)])
def test_anything_else_names_both_counts(n: int, width: int) -> None:
    labels = [f"l{i}" for i in range(n)]
    with pytest.raises(UsageError) as err:
        fit(labels, width, ref="mymodel", labels_file="mine.txt")
    msg = str(err.value)
    assert msg.startswith(f"`labels` mine.txt: {n} labels for the {width} outputs of mymodel; ")
    assert (
        f"{width} labels (or {width + 1} with a background first line, or {width - 1} when output 0 is background)"
        in msg
    )
    assert err.value.exit_code == 2
    with pytest.raises(ModelError) as err3:
        fit(labels, width, ref="mymodel")
    assert str(err3.value).startswith(f"mymodel: the model's own labels do not fit it: {n} labels for {width} outputs;")
    assert err3.value.exit_code == 3


# ---------------------------------------------------------------------- --expect


def test_closest_compares_whole_labels_and_synonyms(fixtures: Path) -> None:
    labels = (fixtures / "imagenet" / "imagenet_labels.txt").read_text().splitlines()
    assert closest("hotdgo", labels) == [
        "hotdog, hot dog, red hot",
        "hot pot, hotpot",
        "hog, pig, grunter, squealer, Sus scrofa",
    ]
    assert closest("macaws", labels) == ["macaw", "maraca", "macaque"]
    assert closest("DAISIES", labels) == ["daisy"]
    assert closest("zzzzqqq", labels) == []
    assert closest("hotdgo", labels, n=1) == ["hotdog, hot dog, red hot"]


def test_closest_lists_each_label_once_closest_first() -> None:
    # "cat" is a synonym in the first label and near the whole first label too: listed once
    assert closest("cat", ["cats, cat", "bat", "hat, cap", "dog"]) == ["cats, cat", "hat, cap", "bat"]
    assert closest("Cat", ["dog", "CAT"]) == ["CAT"]


def test_has_label_matches_whole_labels_and_synonyms() -> None:
    labels = ["hotdog, hot dog, red hot", "Egyptian cat"]
    assert has_label(labels, "Hot Dog") and has_label(labels, "egyptian cat") and has_label(labels, " red hot ")
    assert not has_label(labels, "hot") and not has_label(labels, "cat")


def test_check_expected_message() -> None:
    labels = ["hotdog, hot dog, red hot", "hot pot, hotpot", "daisy"]
    check_expected("hot dog", labels, "m")  # a synonym: fine
    with pytest.raises(UsageError) as err:
        check_expected("hotdgo", labels, "inception_v3")
    assert str(err.value) == (
        "`expect` 'hotdgo': no such label in inception_v3; closest: 'hotdog, hot dog, red hot', 'hot pot, hotpot'"
    )
    with pytest.raises(UsageError) as err:
        check_expected("zzzz", labels, "m")
    assert str(err.value) == "`expect` 'zzzz': no such label in m; `load_model('m').labels` lists what it can say"


# ------------------------------------------------------------ through the command line


@pytest.fixture(scope="module")
def mobilenet(fixtures: Path) -> str:
    return str(fixtures / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="module")
def parrot(fixtures: Path) -> str:
    return str(fixtures / "imagenet" / "images" / "parrot.jpg")


@pytest.fixture(scope="module")
def imagenet_labels(fixtures: Path) -> list[str]:
    return (fixtures / "imagenet" / "imagenet_labels.txt").read_text().splitlines()


def _top1(result) -> tuple[str, str, str]:  # noqa: ANN001
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    return rows[0]["label"], rows[0]["score"], rows[0]["index"]


def test_1000_line_labels_file_on_1001_outputs_keeps_macaw(
    mobilenet: str, parrot: str, tmp_path: Path, imagenet_labels: list[str]
) -> None:
    short = tmp_path / "1000.txt"
    short.write_text("\n".join(imagenet_labels[1:]) + "\n")
    result = invoke("classify", "-m", mobilenet, "--labels", str(short), "-k1", "-f", "csv", parrot)
    assert result.exit_code == 0, result.output
    assert _top1(result) == ("macaw", "0.996094", "89")


def test_labels_file_with_extra_background_line(
    mobilenet: str, parrot: str, tmp_path: Path, imagenet_labels: list[str]
) -> None:
    extra = tmp_path / "1002.txt"
    extra.write_text("\n".join(["???", *imagenet_labels]) + "\n")
    result = invoke("classify", "-m", mobilenet, "--labels", str(extra), "-k1", "-f", "csv", parrot)
    assert result.exit_code == 0, result.output
    assert _top1(result) == ("macaw", "0.996094", "89")


@pytest.mark.parametrize("content, n", [("", 0), ("a\nb\nc\nd\ne\nf\ng\n", 7)])
def test_labels_file_that_does_not_fit_is_exit_2(
    mobilenet: str, parrot: str, tmp_path: Path, content: str, n: int
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    result = invoke("classify", "-m", mobilenet, "--labels", str(bad), parrot)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: --labels {bad}: {n} labels for the 1001 outputs of {mobilenet}; ")


@pytest.mark.heavy
def test_model_labels_that_do_not_fit_are_exit_3(tmp_path: Path, parrot: str) -> None:
    from tests.support import modelgen

    model = modelgen.make_tflite_classifier(tmp_path / "seven.tflite", labels=[f"c{i}" for i in range(7)])
    result = run("classify", "-m", str(model), parrot)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith(f"Error: {model}: the model's own labels do not fit it: 7 labels for 1001 outputs;")
    assert len(result.stderr.strip().splitlines()) == 1
    beside = tmp_path / "beside"
    beside.mkdir()
    plain = modelgen.make_tflite_classifier(beside / "plain.tflite")
    (beside / "labels.txt").write_text("only\ntwo\n")
    result = invoke("classify", "-m", str(plain), parrot)
    assert result.exit_code == 3
    assert "2 labels for 1001 outputs" in result.stderr


@pytest.mark.heavy
def test_no_labels_anywhere_shows_class_numbers_with_one_warning(tmp_path: Path, parrot: str) -> None:
    from tests.support import modelgen

    model = modelgen.make_tflite_classifier(tmp_path / "nolabels.tflite")
    result = invoke("classify", "-m", str(model), "-k1", "-f", "csv", parrot, parrot)
    assert result.exit_code == 0
    assert result.stderr.count("has no labels; showing class numbers") == 1
    assert _top1(result)[0] == f"class {_top1(result)[2]}"


def test_expect_unknown_label_is_exit_2_before_any_work(mobilenet: str, parrot: str) -> None:
    result = invoke("classify", "-m", mobilenet, "--expect", "hotdgo", parrot)
    assert result.exit_code == 2
    assert result.stdout == ""  # nothing was classified
    assert result.stderr == (
        f"Error: --expect 'hotdgo': no such label in {mobilenet}; closest: "
        "'hotdog, hot dog, red hot', 'hot pot, hotpot', 'hog, pig, grunter, squealer, Sus scrofa'\n"
    )
    # a label it has, not the top-1, is still the ordinary exit 1
    assert invoke("classify", "-m", mobilenet, "--expect", "hot dog", parrot).exit_code == 1
    assert invoke("classify", "-m", mobilenet, "--expect", "Macaw", parrot).exit_code == 0


@pytest.mark.heavy
def test_expect_unknown_label_subprocess(mobilenet: str, parrot: str) -> None:
    result = run("classify", "-m", mobilenet, "--expect", "macaws", parrot)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"Error: --expect 'macaws': no such label in {mobilenet}; closest: 'macaw', 'maraca', 'macaque'"
    ]


# ---------------------------------------------------------------------------- one label a line (issue 15 item 6)

SPLITTERS = ["\u2028", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2029"]


@pytest.mark.parametrize("ch", SPLITTERS)
def test_labels_split_on_newline_only(ch: str, tmp_path: Path) -> None:
    assert parse_lines(f"cat\ncou{ch}gar\ndog\n") == ["cat", f"cou{ch}gar", "dog"]
    assert parse_lines("cat\r\ndog\r\n") == ["cat", "dog"]  # Windows line ends are still line ends
    f = tmp_path / "l.txt"
    f.write_text("background\n" + "".join(f"c{i}{ch if i == 500 else ''}x\n" for i in range(1000)), encoding="utf-8")
    read = read_lines(f)
    wc_l = f.read_bytes().count(b"\n")
    assert len(read) == wc_l == 1001  # str.splitlines() made it 1002
    fitted = fit(read, 1001, ref="m", labels_file=str(f))
    assert fitted[0] == "background" and fitted[501] == f"c500{ch}x" and fitted[1000] == "c999x"
