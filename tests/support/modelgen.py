"""Generators for small, real-format test models (and one big one for benchmarks).

Every function here writes real files in the real on-disk formats that imgtool has to
read, so tests exercise the same loading code paths as with downloaded models:

* :func:`make_hub_classifier` / :func:`make_hub_feature_vector` -- TF2 SavedModels laid
  out like TF Hub's ``google/imagenet/inception_v3/{classification,feature_vector}/5``
  (reusable SavedModel API: ``__call__(inputs, training=False)``, ``variables``,
  ``trainable_variables``, ``regularization_losses``; plus a ``serving_default``
  signature).
* :func:`make_hub_tarball` -- TF Hub's ``?tf-hub-format=compressed`` download format.
* :func:`make_2015_archive` -- the layout of ``inception-2015-12-05.tgz`` (frozen TF1
  GraphDef with the real tensor names, label map pbtxt, synset -> human label map).
* :func:`make_tflite_classifier` -- a ``.tflite`` file, optionally full-integer uint8
  and optionally with ``labels.txt`` embedded as TFLite metadata does it.
* :func:`make_inception_v3_savedmodel` -- a full-size, randomly initialised Inception v3
  in the hub layout, for benchmarks.

The small models are deterministic and *meaningful* so tests can check label mapping:
the classifiers score the mean of the R, G and B channels on output ids 1, 2 and 3, so a
pure red image's top-1 is 1, green is 2 and blue is 3.

TensorFlow is only imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CLASSIFIER_IDS",
    "GRAPH2015_LABELS",
    "GRAPH2015_PANDA_TOP1",
    "GRAPH2015_POOL3_DIM",
    "GRAPH2015_SOFTMAX_SIZE",
    "GRAPH2015_SYNSETS",
    "GRAPH2015_TARGET_CLASSES",
    "make_2015_archive",
    "make_hub_classifier",
    "make_hub_feature_vector",
    "make_hub_mlp_feature_vector",
    "make_hub_tarball",
    "make_inception_v3_savedmodel",
    "make_slim_frozen_archive",
    "make_tflite_classifier",
]

#: Output ids the small classifiers (hub, tflite and 2015 graph) give to solid images.
CLASSIFIER_IDS: dict[str, int] = {"red": 1, "green": 2, "blue": 3}

#: Number of outputs of the 2015 graph's ``softmax:0`` (as in the real graph).
GRAPH2015_SOFTMAX_SIZE = 1008
#: Depth of the 2015 graph's ``pool_3:0`` (2048 in the real graph).
GRAPH2015_POOL3_DIM = 8

#: ``target_class`` -> synset in the generated
#: ``imagenet_2012_challenge_label_map_proto.pbtxt``. As in the real file, the ids are
#: not in synset order.
GRAPH2015_TARGET_CLASSES: dict[int, str] = {
    1: "n01443537",
    2: "n01484850",
    3: "n01491361",
    4: "n01496331",
    5: "n01514668",
    6: "n01518878",
    7: "n01440764",
    8: "n01514859",
    9: "n01494475",
    10: "n01498041",
}

#: Genuine ImageNet synsets and their labels from the real
#: ``imagenet_synset_to_human_label_map.txt`` (a subset: the real file has ~21k lines,
#: most of them synsets that are not among the 1000 classes, as some here are not).
GRAPH2015_SYNSETS: dict[str, str] = {
    "n00004475": "organism, being",
    "n00005787": "benthos",
    "n00006024": "heterotroph",
    "n00006484": "cell",
    "n00007846": "person, individual, someone, somebody, mortal, soul",
    "n00015388": "animal, animate being, beast, brute, creature, fauna",
    "n00017222": "plant, flora, plant life",
    "n00021939": "artifact, artefact",
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n01484850": "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
    "n01491361": "tiger shark, Galeocerdo cuvieri",
    "n01494475": "hammerhead, hammerhead shark",
    "n01496331": "electric ray, crampfish, numbfish, torpedo",
    "n01498041": "stingray",
    "n01503061": "bird",
    "n01514668": "cock",
    "n01514859": "hen",
    "n01518878": "ostrich, Struthio camelus",
    "n01530575": "brambling, Fringilla montifringilla",
    "n01531178": "goldfinch, Carduelis carduelis",
    "n01532829": "house finch, linnet, Carpodacus mexicanus",
    "n02084071": "dog, domestic dog, Canis familiaris",
    "n02121808": "domestic cat, house cat, Felis domesticus, Felis catus",
    "n02510455": "giant panda, panda, panda bear, coon bear, Ailuropoda melanoleuca",
    "n02512053": "fish",
}

#: English labels the 2015 archive gives to output ids 1, 2, 3 (red, green, blue images).
GRAPH2015_LABELS: dict[int, str] = {i: GRAPH2015_SYNSETS[GRAPH2015_TARGET_CLASSES[i]] for i in (1, 2, 3)}

#: Top-1 output id of the generated archive's ``cropped_panda.jpg`` (a panda on red).
GRAPH2015_PANDA_TOP1 = 1

#: Logit the small classifiers give to a channel mean of 1.0.
_LOGIT_SCALE = 10.0
#: Constant logit of the Inception v3 benchmark model's background class (index 0).
_BACKGROUND_LOGIT = -100.0
_INCEPTION_SIZE = 299
_LICENSE_TEXT = """\
Copyright 2015 The TensorFlow Authors. All Rights Reserved.
(Synthetic test fixture generated by imgtool's tests/support/modelgen.py; the real archive's
model is not included.)

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
"""


# --------------------------------------------------------------------------- helpers


def _quiet_tf() -> Any:
    """Import TensorFlow with its C++ info logging turned down; return the module."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _write_tgz(out: Path, members: Iterable[tuple[str, bytes | None]]) -> Path:
    """Write a reproducible gzip'd tar; ``None`` content makes a directory entry."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(out, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return out


@functools.cache
def _hub_module_class() -> type:
    """Return a ``tf.Module`` subclass implementing TF Hub's reusable SavedModel API.

    ``tf.Module`` exposes ``variables`` / ``trainable_variables`` as read-only computed
    properties, which are not saved. The reusable SavedModel API (what
    ``hub.KerasLayer`` reads) wants them as saved attributes, so they are shadowed by
    class attributes here and assigned as tracked lists in ``__init__``.
    """
    tf = _quiet_tf()

    class HubModule(tf.Module):
        variables = None  # shadow tf.Module's properties, see above
        trainable_variables = None

        def __init__(
            self,
            fn: Callable[[Any, bool], Any],
            variables: Sequence[Any],
            trainable_variables: Sequence[Any],
        ) -> None:
            super().__init__()
            self._fn = fn  # a plain closure: not tracked, its variables are below
            self.variables = list(variables)
            self.trainable_variables = list(trainable_variables)
            self.regularization_losses: list[Any] = []

        @tf.function
        def __call__(self, inputs: Any, training: bool = False) -> Any:
            return self._fn(inputs, training)

    return HubModule


def _save_hub_module(
    dest: Path,
    fn: Callable[[Any, bool], Any],
    variables: Sequence[Any],
    size: int,
    trainable: bool = True,
    trainable_variables: Sequence[Any] | None = None,
) -> Path:
    """Save ``fn`` (float images [batch, size, size, 3] in [0,1]) as a hub SavedModel.

    Traces ``__call__`` for ``training`` False and True, and adds a ``serving_default``
    signature (input ``inputs``, output ``output_0``).
    """
    tf = _quiet_tf()
    if trainable_variables is None:
        trainable_variables = variables if trainable else []
    module = _hub_module_class()(fn, variables, trainable_variables)
    spec = tf.TensorSpec([None, size, size, 3], tf.float32, name="inputs")
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)

    @tf.function(input_signature=[spec])
    def serving_default(inputs: Any) -> Any:
        return module(inputs, training=False)

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(dest), signatures={"serving_default": serving_default})
    return dest


def _solid_and_noise_images(size: int, count: int, seed: int = 0) -> Iterator[Any]:
    """Yield float32 [1,size,size,3] images in [0,1]: solid colours, then noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    corners = [(r, g, b) for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)]
    for i in range(count):
        if i < len(corners):
            img = np.broadcast_to(np.float32(corners[i]), (1, size, size, 3))
        elif i % 2:
            img = rng.random((1, 1, 1, 3)) * np.ones((1, size, size, 3))
        else:
            img = rng.random((1, size, size, 3))
        yield np.ascontiguousarray(img, dtype=np.float32)


def make_colour_folders(dest: Path, per_class: int = 20, size: int = 48, seed: int = 0) -> Path:
    """Photos to retrain on: one folder per colour (red, green, blue, yellow), each photo
    its colour plus seeded Gaussian noise (sd 30), PNG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, rgb in {
        "red": (200, 40, 40),
        "green": (40, 190, 40),
        "blue": (40, 40, 200),
        "yellow": (210, 200, 40),
    }.items():
        (dest / name).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(rgb) + rng.normal(0, 30, size=(size, size, 3)), 0, 255).astype("uint8")
            Image.fromarray(arr).save(dest / name / f"{name}_{i}.png")
    return dest


# ------------------------------------------------------------------ hub SavedModels


def make_hub_classifier(dest: Path, size: int = 32, num_outputs: int = 1001) -> Path:
    """Write a TF2 SavedModel laid out like TF Hub's inception_v3/classification/5.

    Input: float32 images ``[batch, size, size, 3]`` in [0, 1]. Output: float32 logits
    ``[batch, num_outputs]``, all zero except ``logit[1] = 10 * mean(R)``,
    ``logit[2] = 10 * mean(G)`` and ``logit[3] = 10 * mean(B)`` -- so solid red, green
    and blue images have top-1 1, 2 and 3 (:data:`CLASSIFIER_IDS`). The weights are a
    ``[3, num_outputs]`` ``tf.Variable`` (so ``variables/`` exists); only builtin
    TFLite ops are used (MEAN, FULLY_CONNECTED).
    """
    if num_outputs < 4:
        raise ValueError(f"num_outputs must be >= 4, got {num_outputs}")
    tf = _quiet_tf()
    import numpy as np

    w = np.zeros((3, num_outputs), np.float32)
    w[0, 1] = w[1, 2] = w[2, 3] = _LOGIT_SCALE
    weights = tf.Variable(w, name="logits/kernel")

    def fn(inputs: Any, training: bool) -> Any:
        means = tf.reduce_mean(inputs, axis=[1, 2])  # [batch, 3]
        return tf.matmul(means, weights)

    return _save_hub_module(dest, fn, [weights], size)


def make_hub_feature_vector(dest: Path, size: int = 32, dim: int = 16) -> Path:
    """Write a TF2 SavedModel laid out like TF Hub's inception_v3/feature_vector/5.

    Input: float32 images ``[batch, size, size, 3]`` in [0, 1]. Output: float32
    features ``[batch, dim]`` = 15 statistics (the per-channel means of the whole image
    and of its four quadrants) times a fixed, seeded random ``[15, dim]`` matrix plus a
    bias (both ``tf.Variable``). Solid colours give clearly separable features.
    """
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    tf = _quiet_tf()
    import numpy as np

    rng = np.random.default_rng(1234)
    n_stats = 15
    kernel = tf.Variable(
        (rng.standard_normal((n_stats, dim)) / np.sqrt(n_stats)).astype(np.float32),
        name="features/kernel",
    )
    bias = tf.Variable((0.1 * rng.standard_normal(dim)).astype(np.float32), name="features/bias")
    half = size // 2

    def fn(inputs: Any, training: bool) -> Any:
        parts = [
            inputs,
            inputs[:, :half, :half, :],
            inputs[:, :half, half:, :],
            inputs[:, half:, :half, :],
            inputs[:, half:, half:, :],
        ]
        stats = tf.concat([tf.reduce_mean(p, axis=[1, 2]) for p in parts], axis=1)
        return tf.matmul(stats, kernel) + bias

    return _save_hub_module(dest, fn, [kernel, bias], size)


def make_hub_mlp_feature_vector(dest: Path, size: int = 32, grid: int = 4, hidden: int = 512, dim: int = 512) -> Path:
    """A feature-vector SavedModel (TF Hub layout, like :func:`make_hub_feature_vector`)
    whose weights dominate its size, as in a real backbone: the per-channel means of a
    ``grid`` x ``grid`` patch grid -> dense ``hidden`` + ReLU -> dense ``dim`` + ReLU.
    Fixed seeded weights (~1 MB float32 with the defaults), so a quantized export has
    something to shrink; only builtin TFLite ops (MEAN, FULLY_CONNECTED)."""
    if size % grid:
        raise ValueError(f"size {size} must be a multiple of grid {grid}")
    tf = _quiet_tf()
    import numpy as np

    rng = np.random.default_rng(4321)
    n_in = grid * grid * 3
    w1 = tf.Variable((rng.standard_normal((n_in, hidden)) * np.sqrt(2.0 / n_in)).astype(np.float32), name="fc1/kernel")
    b1 = tf.Variable(np.full(hidden, 0.01, np.float32), name="fc1/bias")
    w2 = tf.Variable((rng.standard_normal((hidden, dim)) * np.sqrt(2.0 / hidden)).astype(np.float32), name="fc2/kernel")
    b2 = tf.Variable(np.full(dim, 0.01, np.float32), name="fc2/bias")
    cell = size // grid

    def fn(inputs: Any, training: bool) -> Any:
        patches = tf.reshape(inputs, [-1, grid, cell, grid, cell, 3])
        stats = tf.reshape(tf.reduce_mean(patches, axis=[2, 4]), [-1, n_in])
        hid = tf.nn.relu(tf.matmul(stats, w1) + b1)
        return tf.nn.relu(tf.matmul(hid, w2) + b2)

    return _save_hub_module(dest, fn, [w1, b1, w2, b2], size)


def make_hub_tarball(savedmodel_dir: Path, out: Path) -> Path:
    """Pack a SavedModel as TF Hub's compressed download (``?tf-hub-format=compressed``).

    A gzip'd tar whose members (``saved_model.pb``, ``variables/``, ...) sit at the
    archive root, with no top-level folder. Output is byte-for-byte reproducible.
    """
    root = Path(savedmodel_dir)
    if not (root / "saved_model.pb").is_file():
        raise FileNotFoundError(f"no saved_model.pb in {root}")
    members: list[tuple[str, bytes | None]] = []
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        members.append((name, None if path.is_dir() else path.read_bytes()))
    return _write_tgz(Path(out), members)


# ------------------------------------------------------------- inception-2015-12-05


def _graph2015_graph_def(size: int) -> Any:
    """Build the frozen (constants-only) GraphDef of the fake 2015 Inception v3.

    Node names follow the real ``classify_image_graph_def.pb``:
    ``DecodeJpeg/contents`` -> ``DecodeJpeg`` -> ``Cast`` -> ``ExpandDims`` ->
    ``ResizeBilinear`` -> ``Sub`` -> ``Mul`` -> ``conv/Conv2D`` -> ``pool_3`` ->
    ``pool_3/_reshape`` -> ``softmax/logits`` -> ``softmax``.
    """
    tf = _quiet_tf()
    import numpy as np

    dim = GRAPH2015_POOL3_DIM
    rng = np.random.default_rng(2015)
    # 1x1 conv: channels 0..2 copy R, G, B; the rest are fixed random mixes.
    conv_w = np.zeros((1, 1, 3, dim), np.float32)
    conv_w[0, 0, :, :3] = np.eye(3)
    conv_w[0, 0, :, 3:] = rng.standard_normal((3, dim - 3))
    soft_w = np.zeros((dim, GRAPH2015_SOFTMAX_SIZE), np.float32)
    soft_w[0, 1] = soft_w[1, 2] = soft_w[2, 3] = _LOGIT_SCALE
    soft_b = np.zeros(GRAPH2015_SOFTMAX_SIZE, np.float32)

    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        # The real graph holds the panda JPEG in a Const here; feeding works the same.
        contents = v1.placeholder(tf.string, shape=[], name="DecodeJpeg/contents")
        decoded = tf.raw_ops.DecodeJpeg(contents=contents, channels=3, name="DecodeJpeg")
        image = tf.raw_ops.Cast(x=decoded, DstT=tf.float32, name="Cast")
        batch = tf.raw_ops.ExpandDims(input=image, axis=tf.constant(0, name="ExpandDims/dim"), name="ExpandDims")
        resized = tf.raw_ops.ResizeBilinear(
            images=batch,
            size=tf.constant([size, size], tf.int32, name="ResizeBilinear/size"),
            name="ResizeBilinear",
        )
        sub = tf.raw_ops.Sub(x=resized, y=tf.constant(128.0, name="Sub/y"), name="Sub")
        mul = tf.raw_ops.Mul(x=sub, y=tf.constant(1.0 / 128.0, name="Mul/y"), name="Mul")
        conv = tf.raw_ops.Conv2D(
            input=mul,
            filter=tf.constant(conv_w, name="conv/conv2d_params"),
            strides=[1, 1, 1, 1],
            padding="VALID",
            name="conv/Conv2D",
        )
        pool = tf.raw_ops.AvgPool(
            value=conv,
            ksize=[1, size, size, 1],
            strides=[1, 1, 1, 1],
            padding="VALID",
            name="pool_3",
        )
        # As in the real graph, the reshape is fixed to batch 1: the graph classifies
        # one image per run, whatever is fed to Mul:0.
        flat = tf.raw_ops.Reshape(
            tensor=pool,
            shape=tf.constant([1, dim], name="pool_3/_reshape/shape"),
            name="pool_3/_reshape",
        )
        matmul = tf.raw_ops.MatMul(
            a=flat,
            b=tf.constant(soft_w, name="softmax/weights"),
            name="softmax/logits/MatMul",
        )
        logits = tf.raw_ops.BiasAdd(
            value=matmul,
            bias=tf.constant(soft_b, name="softmax/biases"),
            name="softmax/logits",
        )
        tf.raw_ops.Softmax(logits=logits, name="softmax")

    graph_def = graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    for required in ("DecodeJpeg/contents", "DecodeJpeg", "Mul", "pool_3", "softmax"):
        if required not in names:  # pragma: no cover - guards against TF renaming
            raise AssertionError(f"node {required!r} missing from 2015 graph")
    if any("Variable" in node.op for node in graph_def.node):  # pragma: no cover
        raise AssertionError("2015 graph must be frozen")
    return graph_def


def _label_map_pbtxt() -> str:
    """``imagenet_2012_challenge_label_map_proto.pbtxt`` text, sorted by synset."""
    entries = sorted(GRAPH2015_TARGET_CLASSES.items(), key=lambda kv: kv[1])
    return "".join(
        f'entry {{\n  target_class: {cls}\n  target_class_string: "{synset}"\n}}\n' for cls, synset in entries
    )


def _synset_map_txt() -> str:
    """``imagenet_synset_to_human_label_map.txt`` text: ``synset\\tlabel`` lines."""
    return "".join(f"{s}\t{label}\n" for s, label in sorted(GRAPH2015_SYNSETS.items()))


def _panda_jpeg() -> bytes:
    """A 100x100 JPEG of a cartoon panda on red (top-1 :data:`GRAPH2015_PANDA_TOP1`)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (100, 100), (210, 40, 30))
    draw = ImageDraw.Draw(img)
    draw.ellipse((18, 8, 40, 30), fill=(15, 15, 15))  # ears
    draw.ellipse((60, 8, 82, 30), fill=(15, 15, 15))
    draw.ellipse((20, 18, 80, 78), fill=(240, 240, 240))  # face
    draw.ellipse((32, 36, 46, 52), fill=(15, 15, 15))  # eye patches
    draw.ellipse((54, 36, 68, 52), fill=(15, 15, 15))
    draw.ellipse((45, 56, 55, 63), fill=(15, 15, 15))  # nose
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_2015_archive(out: Path, size: int = 32) -> Path:
    """Write a ``.tgz`` in the layout of ``inception-2015-12-05.tgz``.

    Members at the archive root: ``classify_image_graph_def.pb`` (a frozen GraphDef
    with the real tensor names), ``imagenet_2012_challenge_label_map_proto.pbtxt``,
    ``imagenet_synset_to_human_label_map.txt``, ``cropped_panda.jpg`` and ``LICENSE``.

    Tensors: ``DecodeJpeg/contents:0`` (string) -> ``DecodeJpeg:0`` (uint8 HxWx3) ->
    ``Mul:0`` float32 ``[1, size, size, 3]`` = (resized - 128) / 128 -> ``pool_3:0``
    float32 ``[1, 1, 1, GRAPH2015_POOL3_DIM]`` (its first 3 values are the mean R, G, B
    of ``Mul``) -> ``pool_3/_reshape`` to the fixed shape ``[1, GRAPH2015_POOL3_DIM]``
    (batch 1, as in the real graph) -> ``softmax:0`` float32 ``[1, 1008]`` with logits 0 except
    ``10 * mean`` of R, G, B on ids 1, 2, 3 (labels in :data:`GRAPH2015_LABELS`).
    ``Mul:0`` can be fed directly, as with the real graph.
    """
    graph_def = _graph2015_graph_def(size)
    members: list[tuple[str, bytes | None]] = [
        (
            "classify_image_graph_def.pb",
            graph_def.SerializeToString(deterministic=True),
        ),
        ("imagenet_2012_challenge_label_map_proto.pbtxt", _label_map_pbtxt().encode()),
        ("imagenet_synset_to_human_label_map.txt", _synset_map_txt().encode()),
        ("cropped_panda.jpg", _panda_jpeg()),
        ("LICENSE", _LICENSE_TEXT.encode()),
    ]
    return _write_tgz(Path(out), members)


# ------------------------------------------------- inception_v3_2016_08_28_frozen


#: Graph file and tensor names of TF-slim's ``inception_v3_2016_08_28_frozen.pb.tar.gz``.
SLIM_GRAPH = "inception_v3_2016_08_28_frozen.pb"
SLIM_INPUT = "input:0"
SLIM_OUTPUT = "InceptionV3/Predictions/Softmax:0"


def make_slim_frozen_archive(out: Path, size: int = 32, num_outputs: int = 1001) -> Path:
    """Write a ``.tar.gz`` in the layout of TF-slim's
    ``inception_v3_2016_08_28_frozen.pb.tar.gz``: ``inception_v3_2016_08_28_frozen.pb``
    (a frozen GraphDef) and ``imagenet_slim_labels.txt`` at the archive root.

    The graph computes :func:`make_hub_classifier`'s function from the same weights, in
    the slim layout: placeholder ``input:0`` float32 ``[1, size, size, 3]`` (batch fixed
    to 1, as in the real graph) with pixels in [-1, 1] -> logits ``10 * mean`` of R, G, B
    (mapped back to [0, 1]) on ids 1, 2, 3 -> ``InceptionV3/Predictions/Softmax:0``
    float32 ``[1, num_outputs]`` *probabilities*. So a pixel fed to the hub model as
    ``p`` and to this graph as ``2p - 1`` gets the softmax of the hub model's logits.
    """
    tf = _quiet_tf()
    import numpy as np

    w = np.zeros((3, num_outputs), np.float32)
    w[0, 1] = w[1, 2] = w[2, 3] = _LOGIT_SCALE
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[1, size, size, 3], name="input")
        unit = tf.raw_ops.Mul(
            x=tf.raw_ops.AddV2(x=x, y=tf.constant(1.0)), y=tf.constant(0.5), name="InceptionV3/unit_range"
        )
        means = tf.raw_ops.Mean(input=unit, axis=tf.constant([1, 2]), name="InceptionV3/Logits/AvgPool_1a_8x8")
        logits = tf.raw_ops.MatMul(
            a=means, b=tf.constant(w, name="InceptionV3/Logits/weights"), name="InceptionV3/Logits/SpatialSqueeze"
        )
        flat = tf.raw_ops.Reshape(
            tensor=logits, shape=tf.constant([-1, num_outputs]), name="InceptionV3/Predictions/Reshape"
        )
        tf.raw_ops.Softmax(logits=flat, name="InceptionV3/Predictions/Softmax")
    graph_def = graph.as_graph_def()
    labels = "dummy\n" + "".join(f"slim class {i}\n" for i in range(1, num_outputs))
    return _write_tgz(
        Path(out),
        [(SLIM_GRAPH, graph_def.SerializeToString(deterministic=True)), ("imagenet_slim_labels.txt", labels.encode())],
    )


# ------------------------------------------------------------------------- TFLite


def make_tflite_classifier(
    out: Path,
    size: int = 32,
    quantized: bool = False,
    labels: list[str] | None = None,
) -> Path:
    """Convert :func:`make_hub_classifier`'s model (1001 outputs) to a ``.tflite`` file.

    ``quantized=True`` gives a full-integer model with uint8 input (images scaled to
    [0, 255]) and uint8 output (quantized logits). ``labels`` are embedded the way TFLite
    metadata does it at the file level: a zip archive holding ``labels.txt`` (one label
    per line) appended to the flatbuffer, so ``zipfile.ZipFile(out).read("labels.txt")``
    works while LiteRT still loads the model.
    """
    tf = _quiet_tf()

    with tempfile.TemporaryDirectory(prefix="modelgen-") as tmp:
        saved = make_hub_classifier(Path(tmp) / "savedmodel", size=size)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        if quantized:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([img] for img in _solid_and_noise_images(size, 64))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        model = converter.convert()

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model)
    if labels is not None:
        import zipfile

        # Mode "a" on a non-zip file appends an archive, exactly as the TFLite
        # metadata populator (tflite_support) does.
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("labels.txt", "".join(f"{label}\n" for label in labels))
    return out


# --------------------------------------------------------------- benchmark model


def _reinit_variance_preserving(net: Any, seed: int = 0) -> None:
    """Re-initialise ``net``'s conv/dense kernels deterministically (He normal).

    Keras' default glorot init shrinks activations ~sqrt(2)x per ReLU layer, so a
    randomly initialised Inception v3 outputs ~1e-3 (near-denormal, unlike a trained
    net, and useless for checking conversion error). He init keeps them O(1).
    """
    import numpy as np
    import tf_keras

    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, (tf_keras.layers.Conv2D, tf_keras.layers.Dense)):
            kernel = layer.kernel
            fan_in = int(np.prod(kernel.shape[:-1]))
            gain = 2.0 if isinstance(layer, tf_keras.layers.Conv2D) else 1.0
            values = rng.standard_normal(tuple(kernel.shape), dtype=np.float32)
            kernel.assign(values * np.float32(np.sqrt(gain / fan_in)))


def make_inception_v3_savedmodel(dest: Path, kind: str = "classification") -> Path:
    """Write a full-size, randomly initialised Inception v3 in the TF Hub layout.

    Input: float32 images ``[batch, 299, 299, 3]`` in [0, 1] (rescaled to [-1, 1]
    inside). ``kind="classification"``: 1001 logits (a constant low background logit at
    index 0, then Keras' 1000 classes). ``kind="feature_vector"``: 2048-d average-pooled
    features. Built with ``tf_keras`` and wrapped in a ``tf.Module`` with an explicit
    ``tf.function`` (a SavedModel wrapping a Keras 3 model has been seen to convert to a
    broken ``.tflite``). The weights are random (seeded He-normal, so activations have a
    realistic O(1) scale and the output is deterministic): only for benchmarks.
    """
    if kind not in ("classification", "feature_vector"):
        raise ValueError(f"kind must be 'classification' or 'feature_vector', got {kind!r}")
    tf = _quiet_tf()
    import tf_keras

    shape = (_INCEPTION_SIZE, _INCEPTION_SIZE, 3)
    if kind == "classification":
        net = tf_keras.applications.InceptionV3(weights=None, input_shape=shape, classifier_activation=None)
    else:
        net = tf_keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg", input_shape=shape)
    _reinit_variance_preserving(net)

    def fn(inputs: Any, training: bool) -> Any:
        outputs = net(inputs * 2.0 - 1.0, training=training)
        if kind == "classification":
            outputs = tf.pad(outputs, [[0, 0], [1, 0]], constant_values=_BACKGROUND_LOGIT)
        return outputs

    module_vars = list(net.trainable_variables) + list(net.non_trainable_variables)
    return _save_hub_module(dest, fn, module_vars, _INCEPTION_SIZE, trainable_variables=net.trainable_variables)


# --------------------------------------------------------------------------- main


def _main() -> None:
    """Build every model into a temporary directory and list what was written."""
    import time

    base = Path(tempfile.mkdtemp(prefix="modelgen-"))
    steps: list[tuple[str, Callable[[], Path]]] = [
        ("hub classifier", lambda: make_hub_classifier(base / "hub_classifier")),
        ("hub feature vector", lambda: make_hub_feature_vector(base / "hub_features")),
        (
            "hub tarball",
            lambda: make_hub_tarball(base / "hub_classifier", base / "hub_classifier.tar.gz"),
        ),
        ("2015 archive", lambda: make_2015_archive(base / "inception-2015-12-05.tgz")),
        ("tflite float", lambda: make_tflite_classifier(base / "classifier.tflite")),
        (
            "tflite uint8 + labels",
            lambda: make_tflite_classifier(
                base / "classifier_uint8.tflite",
                quantized=True,
                labels=["background"] + [f"class {i}" for i in range(1, 1001)],
            ),
        ),
        (
            "inception v3 classification",
            lambda: make_inception_v3_savedmodel(base / "inception_v3_classification"),
        ),
        (
            "inception v3 feature_vector",
            lambda: make_inception_v3_savedmodel(base / "inception_v3_feature_vector", kind="feature_vector"),
        ),
    ]
    for title, build in steps:
        start = time.perf_counter()
        path = build()
        took = time.perf_counter() - start
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            size = sum(p.stat().st_size for p in files)
            detail = ", ".join(p.relative_to(path).as_posix() for p in files)
        else:
            size, detail = path.stat().st_size, ""
        print(f"{title:30s} {took:6.1f}s {size:>12,d} B  {path}")
        if detail:
            print(f"{'':30s}         {detail}")
    if tarfile.is_tarfile(base / "inception-2015-12-05.tgz"):
        with tarfile.open(base / "inception-2015-12-05.tgz") as tar:
            print("2015 archive members:", ", ".join(tar.getnames()))
    print(f"labels for ids 1-3: {GRAPH2015_LABELS}")


if __name__ == "__main__":
    _main()
