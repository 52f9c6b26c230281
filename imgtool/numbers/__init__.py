"""Numbers decided from a model's outputs and the data: score kinds and softmax, metrics,
calibration, and what an audit finds. numpy only."""
