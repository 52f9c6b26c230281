"""imgtool: classify photos with pretrained networks, retrain the last layer on your own."""

__version__ = "0.1.0"
