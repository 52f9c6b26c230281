"""The TFLite formats, read and written in one place (no TensorFlow, no interpreter):

- `schema.py`: the one table of the metadata schema's fields (metadata_schema.fbs) and the
  constants both formats name;
- `reading.py`: what a `.tflite` says, from its bytes: the graph (which operator computes
  an output, the input tensor) and its TFLite metadata;
- `writing.py`: metadata flatbuffers built from the table, attached to a model with its
  packed files, and the graph edits (tensors, operators) of a model flatbuffer;
- `head.py`: a classification head appended to a backbone's graph, float or uint8.

Layer: foundations (imports only files and errors; labels, engine and the exports read
through it)."""
