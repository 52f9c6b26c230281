"""The floor for classifying a folder: decode on 2 threads ahead of one interpreter, jsonl out.

    python benchmarks/floor_folder.py MODEL.tflite LABELS.txt FOLDER
Pillow decodes and resizes (BILINEAR) on a 2-thread pool (Executor.map: all submitted up front); one LiteRT
interpreter runs them one at a time; top 1 printed as one JSON line per image."""
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

model, labels_file, folder = sys.argv[1:4]
it = Interpreter(model_path=model)
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
h, w = int(inp["shape"][1]), int(inp["shape"][2])
scale, zero = out["quantization"]
with open(labels_file, encoding="utf-8") as f:
    labels = f.read().splitlines()
paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(folder) for f in fs if f.lower().endswith(".jpg"))


def load(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((w, h), Image.BILINEAR))[None]


with ThreadPoolExecutor(2) as pool:
    for path, x in zip(paths, pool.map(load, paths)):
        if inp["dtype"] == np.float32:
            x = x.astype(np.float32) / 255.0
        it.set_tensor(inp["index"], x)
        it.invoke()
        y = it.get_tensor(out["index"])[0].astype(np.float32)
        if scale:
            y = (y - zero) * scale
        i = int(np.argmax(y))
        print(json.dumps({"path": path, "label": labels[i] if i < len(labels) else str(i), "score": float(y[i])}))
