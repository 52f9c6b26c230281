"""Model references: what the user typed after `--model`, parsed into a typed value.

Accepted references, tried in this order:
  catalog:NAME            a catalog record, explicitly
  http(s)://...           a .tar.gz / .tflite URL; tfhub.dev and kaggle.com model pages too
  hub:OWNER/.../VERSION   a TF Hub handle (tfhub.dev), e.g. hub:google/imagenet/mobilenet_v2_100_224/classification/5
  kaggle:OWNER/MODEL/FRAMEWORK/VARIATION/VERSION   a Kaggle Models handle
  ./path, /path, path     a local .tflite file, SavedModel directory, frozen GraphDef .pb,
                          .tar.gz archive, or a folder written by `imgtool retrain`
  NAME                    a catalog name (`imgtool models list`)
A name that is both a catalog entry and a local path is an error naming both readings.
A reference that looks like a path (a `/`, or a file suffix such as .tflite) and names
nothing on disk is "no such file", not an unknown catalog name.

Layer: bottom (errors only); no file is read but for whether a path exists.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgtool.core.errors import Advice, ModelNotFoundError, UsageError

RefKind = Literal["catalog", "url", "path"]


@dataclass(frozen=True)
class Ref:
    """A parsed reference. `catalog`: `name` is a catalog name; `url`: `url` is what to
    download (hub/kaggle handles and model pages already turned into it); `path`: `path`."""

    text: str
    kind: RefKind
    name: str | None = None
    url: str | None = None
    path: Path | None = None


def key_for(text: str, prefix: str) -> str:
    """A cache entry key for a URL or a local model."""
    return f"{prefix}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"


def hub_handle_url(handle: str) -> str:
    return f"https://tfhub.dev/{handle.strip('/')}?tf-hub-format=compressed"


def kaggle_handle_url(handle: str) -> str:
    parts = handle.strip("/").split("/")
    if len(parts) != 5:
        raise UsageError(f"kaggle:{handle}: a Kaggle handle is OWNER/MODEL/FRAMEWORK/VARIATION/VERSION")
    return "https://www.kaggle.com/api/v1/models/" + "/".join(parts) + "/download"


def page_to_download(url: str) -> str:
    marker = "kaggle.com/models/"
    if marker in url and "/api/" not in url:
        return kaggle_handle_url(url.split(marker, 1)[1].split("?")[0])
    return url


_FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]*")  # .tflite, .pb, .gz; not the ".0_224" of a catalog name


def looks_like_a_path(ref: str) -> bool:
    """A reference written as a path: it has a `/` (or the OS's separator), or ends in a
    file suffix. Catalog names have neither."""
    return "/" in ref or os.sep in ref or bool(_FILE_SUFFIX.fullmatch(os.path.splitext(ref)[1]))


def parse(ref: str, catalog: Collection[str]) -> Ref:
    """What `ref` names, given the catalog's names (UsageError when it is ambiguous,
    ModelError when it names nothing)."""
    if ref.startswith("catalog:"):
        return Ref(ref, "catalog", name=ref[len("catalog:") :])
    if ref.startswith(("http://", "https://")):
        return Ref(ref, "url", url=page_to_download(ref))
    if ref.startswith("hub:"):
        return Ref(ref, "url", url=hub_handle_url(ref[4:]))
    if ref.startswith("kaggle:"):
        return Ref(ref, "url", url=kaggle_handle_url(ref[7:]))
    if os.path.lexists(ref):
        if ref in catalog and "/" not in ref and not ref.startswith("."):
            raise UsageError(
                f"{ref!r} is both a catalog model and a path here; write catalog:{ref} or ./{ref} to choose"
            )
        return Ref(ref, "path", path=Path(ref))
    if ref in catalog:
        return Ref(ref, "catalog", name=ref)
    if looks_like_a_path(ref):
        raise ModelNotFoundError(
            f"{ref}: no such file or folder; give the path of a model file (.tflite, .pb, "
            ".tar.gz), a SavedModel or retrained folder, or a catalog name"
        )
    import difflib

    near = difflib.get_close_matches(ref, list(catalog), n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    raise ModelNotFoundError(
        f"unknown model {ref!r}: not a file, URL, hub handle or catalog name{hint}; " + Advice.LIST_CATALOG, model=ref
    )
