"""Run MediaPipe Tasks' ImageClassifier on images; print one JSON line per image.

Runs inside the separate `.venv-mediapipe` (see Makefile `install-mediapipe`), never
imported by the test suite itself: `python mediapipe_classify.py MODEL IMAGE...`.
Each line: {"path", "index", "name", "score"} of the top category (all categories are
requested; a model MediaPipe refuses makes this exit non-zero with its message)."""

import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import vision
from mediapipe.tasks.python.core.base_options import BaseOptions


def main() -> None:
    model, paths = sys.argv[1], sys.argv[2:]
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for path in paths:
            result = classifier.classify(mp.Image.create_from_file(path))
            cats = result.classifications[0].categories
            top = max(cats, key=lambda c: c.score)
            print(
                json.dumps(
                    {
                        "path": path,
                        "index": top.index,
                        "name": top.category_name,
                        "score": top.score,
                        "scores": {c.index: c.score for c in cats},
                    }
                )
            )


if __name__ == "__main__":
    main()
