"""Label lists: index -> English, from every place a model keeps them."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from imgtool.core import files, ui
from imgtool.core.errors import Advice, Call, ModelError, Param, UsageError

# Names a labels file beside a model (or inside a .tflite's metadata zip) commonly has.
LABEL_FILE_NAMES = (
    "labels.txt",
    "imagenet_labels.txt",
    "ImageNetLabels.txt",
    "labelmap.txt",
    "output_labels.txt",
    "retrained_labels.txt",
    "class_names.txt",
)


def read_lines(path: Path) -> list[str]:
    """A labels file's labels (`split_lines`): a regular UTF-8 file of at most
    files.LABELS_MAX_BYTES; anything else is a UsageError naming the file."""
    try:
        text = files.read_text(path, files.LABELS_MAX_BYTES)
    except files.FileProblem as err:
        if str(err) == "not UTF-8 text":
            raise UsageError(f"labels file {path} is not UTF-8 text; give one label a line") from None
        raise UsageError(
            f"cannot read labels file {path}: {err}; " + Advice.GIVE_LABELS + ", one label a line",
            parameter="labels",
            path=path,
        ) from None
    return parse_lines(text)


def split_lines(text: str) -> list[str]:
    """Lines as `wc -l` counts them: ended by "\n" only ("\r\n" allowed), never by the
    other characters `str.splitlines` breaks at (U+2028, \r alone, \x0b, \x0c, \x1c-\x1e,
    \x85, U+2029): a label holding one of those stays one label, so no label moves."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the last line's own "\n"
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def parse_lines(text: str) -> list[str]:
    """One label a line (`split_lines`), each stripped; blank lines at the end dropped."""
    lines = split_lines(text)
    while lines and not lines[-1].strip():
        lines.pop()
    return [ln.strip() for ln in lines]


def embedded_tflite_labels(path: Path) -> list[str] | None:
    """A .tflite with metadata is also a zip archive holding its associated files; the
    metadata names the output's labels file (TENSOR_AXIS_LABELS), else a usual name.
    The member is read only up to files.LABELS_MAX_BYTES (a zip bomb in the metadata
    costs nothing); a bigger one, or a file that is not a regular file, has no labels."""
    import zipfile  # here: a run with its labels given (or recorded in the facts) never reads a zip

    try:
        with files.open_regular(path) as fh:
            if not zipfile.is_zipfile(fh):
                return None
            with zipfile.ZipFile(fh) as zf:
                names = zf.namelist()
                from imgtool.tflite import reading

                meta = reading.output_metadata(Path(path), 0)
                named = meta.label_files if meta else ()
                pick = next((n for n in named if n in names), None)
                if pick is None:
                    pick = next((n for n in names if Path(n).name in LABEL_FILE_NAMES), None)
                if pick is None:
                    pick = next((n for n in names if n.lower().endswith(".txt") and "label" in n.lower()), None)
                if pick is None:
                    return None
                info = zf.getinfo(pick)
                if info.file_size > files.LABELS_MAX_BYTES:
                    ui.warn(
                        f"{path}: its embedded {pick} holds {info.file_size:,} bytes, more than a labels file "
                        f"may ({files.LABELS_MAX_BYTES:,}); ignored"
                    )
                    return None
                with zf.open(info) as member:
                    data = member.read(files.LABELS_MAX_BYTES + 1)
                if len(data) > files.LABELS_MAX_BYTES:
                    return None
                return parse_lines(data.decode("utf-8"))
    except (
        OSError,
        files.FileProblem,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        KeyError,
        RuntimeError,
        NotImplementedError,
        EOFError,
        ValueError,
    ):
        return None


def beside(model_path: Path) -> Path | None:
    """A labels file next to the model file, or inside the model directory."""
    folder = model_path if model_path.is_dir() else model_path.parent
    for name in LABEL_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    if model_path.is_file():
        stem = model_path.with_suffix(".txt")
        if stem.is_file():
            return stem
    return None


def find_beside(model_path: Path) -> list[str] | None:
    """Labels lying next to a model: a labels file, or the 2015 graph's pair of maps."""
    found = beside(model_path)
    if found is not None:
        return read_lines(found)
    folder = model_path if model_path.is_dir() else model_path.parent
    pbtxt = folder / "imagenet_2012_challenge_label_map_proto.pbtxt"
    synsets = folder / "imagenet_synset_to_human_label_map.txt"
    if pbtxt.is_file() and synsets.is_file():
        return imagenet2015(pbtxt, synsets)
    return None


_ENTRY = re.compile(r"target_class:\s*(\d+)\s*target_class_string:\s*\"([^\"]+)\"")


def imagenet2015(label_map: Path, synsets: Path, num_outputs: int = 1008) -> list[str]:
    """The 2015 graph's scheme: output id -> synset (pbtxt) -> English (tsv).

    Ids with no entry (the graph has 1008 outputs for 1000 classes) get a visible
    placeholder rather than an empty string."""
    try:
        id_to_synset = {int(i): s for i, s in _ENTRY.findall(label_map.read_text(encoding="utf-8"))}
        human: dict[str, str] = {}
        for line in split_lines(synsets.read_text(encoding="utf-8")):
            parts = line.split("\t", 1)
            if len(parts) == 2:
                human[parts[0].strip()] = parts[1].strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"cannot read the 2015 label maps ({err}); the model download is incomplete") from None
    if not id_to_synset:
        raise ModelError(f"{label_map.name} holds no `target_class` entries; the model download is corrupt")
    n = max(num_outputs, max(id_to_synset) + 1)
    out = []
    for i in range(n):
        syn = id_to_synset.get(i)
        out.append(human.get(syn, syn) if syn else f"(unused id {i})")
    return out


def fold(text: str) -> str:
    """`text` for comparing "in any case": NFKC-normalised, then casefold(), with the dot
    casefold() leaves on a capital dotted I ("İ" -> "i" + U+0307) dropped, so `istanbul`
    matches `İstanbul` as `straße` matches `STRASSE`."""
    return unicodedata.normalize("NFKC", text.strip()).casefold().replace("i\u0307", "i")


def matches(label: str, expected: str) -> bool:
    """`hot dog` matches `hotdog, hot dog, red hot`: whole label or one synonym, any case."""
    want = fold(expected)
    if fold(label) == want:
        return True
    return any(fold(part) == want for part in label.split(","))


# First lines that name no class: the output 0 some models reserve for "nothing".
BACKGROUND_LABELS = ("background", "unused", "???", "__background__")


def fit(labels: list[str], width: int, *, ref: str, labels_file: str | None = None) -> list[str]:
    """The label of each of a model's `width` outputs.

    Equal counts fit as they are; one label more whose first line is a background label
    (`background`, `unused`, `???`, `__background__`) loses that line; one label fewer
    fits a model whose output 0 is background (the 1000-line ImageNet file on a
    1001-output model) by naming output 0 `background`, so every other label keeps its
    index. Anything else is an error naming both counts: a usage error (exit 2) for a
    `--labels` file, a model error (exit 3) for labels that came with the model."""
    n = len(labels)
    if n == width:
        return list(labels)
    if n == width + 1 and fold(labels[0]) in BACKGROUND_LABELS:
        return list(labels[1:])
    if n and n == width - 1:
        return ["background", *labels]
    need = f"{width} labels (or {width + 1} with a background first line, or {width - 1} when output 0 is background)"
    if labels_file is not None:
        raise UsageError(
            Param("labels") + f" {labels_file}: {n} labels for the {width} outputs of {ref}; "
            f"give one label a line: {need}",
            path=labels_file,
            model=ref,
        )
    raise ModelError(
        f"{ref}: the model's own labels do not fit it: {n} labels for {width} outputs; "
        "the model is broken, or " + Advice.GIVE_LABELS + f" with {need}",
        model=ref,
    )


def has_label(labels: list[str], expected: str) -> bool:
    return any(matches(label, expected) for label in labels)


def closest(expected: str, labels: list[str], n: int = 3) -> list[str]:
    """The labels closest to `expected` (difflib), comparing it with whole labels and with
    each comma-separated synonym, any case; each label once, closest first."""
    import difflib

    want = fold(expected)
    candidates: dict[str, str] = {}  # folded label or synonym -> the whole label
    for label in labels:
        for text in (label, *label.split(",")):
            candidates.setdefault(fold(text), label)
    out: list[str] = []
    for text in difflib.get_close_matches(want, list(candidates), n=len(candidates), cutoff=0.6):
        if candidates[text] not in out:
            out.append(candidates[text])
        if len(out) == n:
            break
    return out


def check_expected(expected: str, labels: list[str], ref: str) -> None:
    """`--expect LABEL` must name one of the model's labels (or a synonym in one)."""
    if has_label(labels, expected):
        return
    near = closest(expected, labels)
    hint = (
        ("closest: " + ", ".join(repr(x) for x in near))
        if near
        else Call("load_model.labels", ref) + " lists what it can say"
    )
    raise UsageError(Param("expect") + f" {expected!r}: no such label in {ref}", hint=hint, model=ref)
