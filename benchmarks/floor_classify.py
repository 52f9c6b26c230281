"""The floor for a cold one-photo classify: what a user who wants speed writes by hand.

    python benchmarks/floor_classify.py MODEL.tflite LABELS.txt PHOTO
LiteRT loads the .tflite, Pillow decodes and resizes (BILINEAR), one invoke, dequantize, top 5."""
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

model, labels_file, photo = sys.argv[1:4]
it = Interpreter(model_path=model)
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
h, w = int(inp["shape"][1]), int(inp["shape"][2])
with Image.open(photo) as im:
    x = np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR))[None]
if inp["dtype"] == np.float32:
    x = x.astype(np.float32) / 255.0
it.set_tensor(inp["index"], x)
it.invoke()
y = it.get_tensor(out["index"])[0].astype(np.float32)
scale, zero = out["quantization"]
if scale:
    y = (y - zero) * scale
with open(labels_file, encoding="utf-8") as f:
    labels = f.read().splitlines()
for i in np.argsort(-y)[:5]:
    print(f"{labels[i] if i < len(labels) else i}: {y[i]:.4f}")
