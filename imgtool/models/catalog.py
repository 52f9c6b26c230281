"""The model catalog: one record per model, read by loading, preprocessing and labelling.

Records come from `imgtool/models/catalog.json` (shipped as `imgtool.models`) and, when the
environment variable IMGTOOL_CATALOG names a JSON file of the same shape, from that file
too (its records add to or replace the built-in ones: private mirrors, more models).

Layer: foundations (above errors, scores, settings).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any, Literal, get_args

from imgtool.core.errors import ModelError, Param, UsageError
from imgtool.numbers.scores import OUTPUT_KINDS, OutputKind

ModelFormat = Literal["savedmodel", "graphdef", "tflite"]
FORMATS: tuple[ModelFormat, ...] = get_args(ModelFormat)
Purpose = Literal["classifier", "features"]


@dataclass(frozen=True)
class LabelSource:
    """Where a model's labels come from: a text file (one a line, by URL or archive member),
    or the 2015 graph's pair of id->synset and synset->English maps."""

    format: str = "lines"  # "lines" | "imagenet2015"
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None  # bytes, pinned with sha256 where the file is byte-stable
    member: str | None = None  # a file inside the model archive
    label_map: str | None = None  # imagenet2015: the .pbtxt
    synsets: str | None = None  # imagenet2015: synset -> human label map

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelSource:
        d = dict(d)
        d["urls"] = tuple(d.get("urls", ()))
        return cls(**d)


MAX_INPUT_SIDE = 4096  # pixels a side of a model's input; real classifiers take 96..600


def check_input_size(size: Any) -> tuple[int, int]:
    """`input_size` as (height, width), each a whole number 1..MAX_INPUT_SIDE (UsageError:
    0 cannot run, 100000 would allocate 28 GiB a photo)."""
    try:
        h, w = size
        ok = all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_INPUT_SIDE for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(
            Param("input_size") + f" {size!r}: give HEIGHT,WIDTH, each a whole number from 1 to {MAX_INPUT_SIDE}"
        )
    return int(h), int(w)


def check_value_range(value_range: Any) -> tuple[float, float]:
    """`value_range` as (lo, hi): two finite numbers that differ (UsageError)."""
    try:
        lo, hi = (float(v) for v in value_range)
        ok = math.isfinite(lo) and math.isfinite(hi) and lo != hi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(
            Param("value_range") + f" {value_range!r}: give LO,HI, two finite numbers that differ (e.g. -1,1)"
        )
    return lo, hi


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to fetch, feed and read one model (timm's pretrained_cfg, for us)."""

    name: str
    format: ModelFormat
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    description: str = ""
    input_size: tuple[int, int] | None = None  # (height, width); None: read from the model
    value_range: tuple[float, float] | None = None  # pixel 0 -> lo, 255 -> hi (linear)
    output: OutputKind | None = None  # None: inferred
    labels: LabelSource | None = None
    features: str | None = None  # catalog name of the feature-vector twin, for retraining
    graph: str | None = None  # graphdef: file name inside the archive
    input_tensor: str | None = None
    output_tensor: str | None = None
    feature_tensor: str | None = None
    size: int | None = None  # bytes of the download, pinned with sha256
    sources: tuple[Source, ...] = ()  # tried after `urls`, each with settings of its own
    embedded: str | None = None  # a file shipped in the package (imgtool/models/embedded/): never downloaded

    @property
    def purpose(self) -> Purpose:
        """ "features" for a feature extractor (a backbone to retrain on), else "classifier"."""
        return "features" if self.output == "features" else "classifier"

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelError(f"catalog record {name!r} has unknown fields: {', '.join(sorted(unknown))}")
        d = dict(d)
        d["name"] = name
        d["sources"] = tuple(Source.from_dict(name, i, s) for i, s in enumerate(d.get("sources") or ()))
        if d.get("format") not in FORMATS:
            raise ModelError(f"catalog record {name!r}: format must be one of {', '.join(FORMATS)}")
        if d.get("output") is not None and d["output"] not in OUTPUT_KINDS:
            raise ModelError(f"catalog record {name!r}: output must be one of {', '.join(OUTPUT_KINDS)}")
        d["urls"] = tuple(d.get("urls", ()))
        if d.get("input_size") is not None:
            d["input_size"] = tuple(int(v) for v in d["input_size"])
        if d.get("value_range") is not None:
            d["value_range"] = tuple(float(v) for v in d["value_range"])
        if d.get("labels") is not None:
            d["labels"] = LabelSource.from_dict(d["labels"])
        if d.get("embedded") is not None:
            if not (d.get("sha256") and d.get("size")):
                raise ModelError(f"catalog record {name!r}: an embedded model needs its sha256 and size pinned")
            file = d["embedded"]
            if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
                raise ModelError(
                    f"catalog record {name!r}: embedded must name a file in imgtool/models/embedded/ (got {file!r})"
                )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sources"] = [{"url": s.url, **s.overrides} for s in self.sources]
        return {k: v for k, v in d.items() if v not in (None, (), {}, "", [])}

    def candidates(self) -> list[tuple[str, ModelConfig]]:
        """Every place this model can come from, in order, each with the config that
        goes with it: the record's `urls` (its own settings; `sha256`/`size` pin each),
        then its `sources` (see `for_source`)."""
        primary = replace(self, sources=())
        return [(url, primary) for url in self.urls] + [(s.url, self.for_source(s)) for s in self.sources]

    def for_source(self, source: Source) -> ModelConfig:
        """The record with one source's settings on top. Pins (sha256, size) belong to
        one URL and are never inherited; a source of another format inherits none of the
        format's fields (graph, tensors) either."""
        base = self.to_dict()
        for key in ("urls", "sources", "sha256", "size"):
            base.pop(key, None)
        if source.overrides.get("format", self.format) != self.format:
            for key in FORMAT_FIELDS:
                base.pop(key, None)
        return ModelConfig.from_dict(self.name, {**base, **source.overrides, "urls": [source.url]})


#: Fields that only mean something for one format.
FORMAT_FIELDS = ("graph", "input_tensor", "output_tensor", "feature_tensor")
#: What a source may set for itself.
SOURCE_FIELDS = frozenset(
    {
        "format",
        "sha256",
        "size",
        "graph",
        "input_tensor",
        "output_tensor",
        "feature_tensor",
        "input_size",
        "value_range",
        "output",
        "labels",
        "description",
    }
)


@dataclass(frozen=True)
class Source:
    """One more place a model can come from, in a format and with settings of its own
    (e.g. a frozen graph with probabilities out, after TF Hub's SavedModel with logits)."""

    url: str
    overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_dict(cls, name: str, index: int, d: Any) -> Source:
        if isinstance(d, Source):
            return d
        if not isinstance(d, dict) or not isinstance(d.get("url"), str):
            raise ModelError(f'catalog record {name!r}: sources[{index}] needs a "url"')
        overrides = {k: v for k, v in d.items() if k != "url"}
        unknown = set(overrides) - SOURCE_FIELDS
        if unknown:
            raise ModelError(
                f"catalog record {name!r}: sources[{index}] has unknown fields: "
                f"{', '.join(sorted(unknown))} (a source may set {', '.join(sorted(SOURCE_FIELDS))})"
            )
        return cls(url=d["url"], overrides=overrides)


def _read(text: str, origin: str) -> dict[str, ModelConfig]:
    try:
        data = json.loads(text)
        records = data["models"]
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"catalog {origin} is not a valid catalog file ({err}); fix or remove it") from None
    from imgtool.core import store

    if not isinstance(records, dict):
        raise ModelError(f'catalog {origin} is not a valid catalog file ("models" is not an object); fix or remove it')
    for name in records:
        if not store.safe_name(name):  # the name becomes the cache entry's folder, lock and temporary names
            raise ModelError(
                f"catalog {origin}: record name {name!r} cannot be used: it must be {store.NAME_RULE}; "
                "rename the record"
            )
    return {name: ModelConfig.from_dict(name, rec) for name, rec in records.items()}


def load_catalog() -> dict[str, ModelConfig]:
    """Built-in records, then IMGTOOL_CATALOG's on top."""
    text = resources.files("imgtool.models").joinpath("catalog.json").read_text(encoding="utf-8")
    catalog = _read(text, "built-in")
    from imgtool.core import settings

    extra = settings.current().catalog
    if extra:
        from imgtool.core import files

        try:
            extra_text = files.read_text(extra, files.RECORD_MAX_BYTES)  # a FIFO cannot hang it
        except files.FileProblem as err:
            raise ModelError(f"IMGTOOL_CATALOG={extra}: {err}; point it at a catalog JSON file or unset it") from None
        catalog.update(_read(extra_text, extra))
    return catalog


DEFAULT_MODEL = "inception_v3"


def model_or_default(ref: str | None) -> str:
    """The one rule for a model not given: $IMGTOOL_MODEL, else DEFAULT_MODEL (retrain and
    audit try $IMGTOOL_BACKBONE before they get here)."""
    from imgtool.core import settings

    return ref or settings.current().model or DEFAULT_MODEL


def embedded_names(catalog: dict[str, ModelConfig], purpose: Purpose) -> list[str]:
    """The catalog's models that ship inside the package, of one purpose."""
    return [name for name, cfg in catalog.items() if cfg.embedded and cfg.purpose == purpose]
