"""Running a model: TensorFlow (imported only here), the LiteRT/TF engines, the facts a model
file states, and the bottleneck cache of backbone features."""
