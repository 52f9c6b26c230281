"""What a .tflite file says about its outputs, read from the file itself (no inference,
no TensorFlow): which operator computes an output, and what the TFLite metadata
(`TFLITE_METADATA`, the ModelMetadata flatbuffer of tflite_support) says about it.

The operator is read from the flatbuffer rather than from the interpreter's node list:
there, a delegate (XNNPACK, on by default) adds DELEGATE nodes that write the same output
tensors as the operators they took over, and a compiled model (Edge TPU) is one custom op."""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Operators that pass a tensor's meaning through unchanged: the output of RESHAPE(SOFTMAX(x))
# is still probabilities.
PASSTHROUGH = frozenset({"RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE", "EXPAND_DIMS", "CAST"})

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"

# tflite_support's metadata_schema.fbs, as far as we read it (field slots in declaration order).
_MODEL_SUBGRAPH_METADATA = 3  # ModelMetadata.subgraph_metadata:[SubGraphMetadata]
_SUBGRAPH_OUTPUT_TENSORS = 3  # SubGraphMetadata.output_tensor_metadata:[TensorMetadata]
_TENSOR_NAME = 0  # TensorMetadata.name:string
_TENSOR_DESCRIPTION = 1  # TensorMetadata.description:string
_TENSOR_FILES = 6  # TensorMetadata.associated_files:[AssociatedFile]
_FILE_NAME = 0  # AssociatedFile.name:string
_FILE_TYPE = 2  # AssociatedFile.type:AssociatedFileType (byte)
TENSOR_AXIS_LABELS = 2


@dataclass(frozen=True)
class OutputMetadata:
    """One output tensor's entry in the TFLite metadata."""

    name: str = ""
    description: str = ""
    label_files: tuple[str, ...] = ()  # associated files of type TENSOR_AXIS_LABELS


def _builtin_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _open(path: Path) -> Any:
    from imgtool import files

    try:
        fh = files.open_regular(path)
    except files.FileProblem as err:
        raise OSError(str(err)) from None
    with fh:
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def output_producer(path: Path, tensor: int, subgraph: int = 0) -> str | None:
    """The name of the operator that computes `tensor` (a tensor index, as the
    interpreter's output details give it), looking through RESHAPE, DEQUANTIZE and the
    like; a custom op by its custom code; None when no operator writes it (or the file
    cannot be read as a TFLite flatbuffer)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        buf = _open(path)
    except (OSError, ValueError):
        return None
    try:
        model = schema.Model.GetRootAs(buf, 0)
        graph = model.Subgraphs(subgraph)
        if graph is None:
            return None
        names = _builtin_names()
        producers: dict[int, Any] = {}
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            for t in op.OutputsAsNumpy() if op.OutputsLength() else ():
                producers[int(t)] = op
        seen: set[int] = set()
        while tensor in producers and tensor not in seen:
            seen.add(tensor)
            op = producers[tensor]
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
            name = names.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                custom = code.CustomCode()
                return f"CUSTOM:{custom.decode('utf-8', 'replace')}" if custom else "CUSTOM"
            if name not in PASSTHROUGH or not op.InputsLength():
                return name
            tensor = int(op.Inputs(0))
        return None
    except (IndexError, ValueError, TypeError, AttributeError, struct.error):
        return None  # not a well-formed flatbuffer: the interpreter will say so when loading
    finally:
        buf.close()


def _metadata_bytes(buf: Any) -> bytes | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(buf, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() != METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer is None:
            return None
        if buffer.DataLength():
            return buffer.DataAsNumpy().tobytes()
        if buffer.Offset() and buffer.Size():  # large models keep buffers after the flatbuffer
            return bytes(buf[buffer.Offset():buffer.Offset() + buffer.Size()])
    return None


class _Table:
    """The few flatbuffer accessors the metadata needs: generic tables, fields by slot."""

    def __init__(self, buf: bytearray, pos: int):
        from flatbuffers.table import Table

        self.t = Table(buf, pos)

    def _field(self, slot: int) -> int:
        return int(self.t.Offset(4 + 2 * slot))

    def string(self, slot: int) -> str:
        o = self._field(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else ""

    def byte(self, slot: int) -> int:
        from flatbuffers.number_types import Uint8Flags

        o = self._field(slot)
        return int(self.t.Get(Uint8Flags, o + self.t.Pos)) if o else 0

    def tables(self, slot: int) -> list[_Table]:
        o = self._field(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * j)) for j in range(self.t.VectorLen(o))]


def output_metadata(path: Path, position: int) -> OutputMetadata | None:
    """The metadata of the model's `position`-th output (0: the first), or None when the
    file carries no TFLite metadata (or it cannot be read)."""
    try:
        buf = _open(path)
    except (OSError, ValueError):
        return None
    try:
        data = _metadata_bytes(buf)
        if data is None or len(data) < 8 or data[4:8] != METADATA_IDENTIFIER:
            return None
        from flatbuffers import encode, packer

        raw = bytearray(data)
        root = _Table(raw, int(encode.Get(packer.uoffset, raw, 0)))
        subgraphs = root.tables(_MODEL_SUBGRAPH_METADATA)
        if not subgraphs:
            return None
        outputs = subgraphs[0].tables(_SUBGRAPH_OUTPUT_TENSORS)
        if position >= len(outputs):
            return None
        tensor = outputs[position]
        files = tuple(f.string(_FILE_NAME) for f in tensor.tables(_TENSOR_FILES)
                      if f.byte(_FILE_TYPE) == TENSOR_AXIS_LABELS)
        return OutputMetadata(tensor.string(_TENSOR_NAME), tensor.string(_TENSOR_DESCRIPTION), files)
    except (IndexError, ValueError, TypeError, AttributeError, struct.error):
        return None  # damaged metadata says nothing; the graph still does
    finally:
        buf.close()
