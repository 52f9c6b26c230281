"""The work on a user's folder: retraining the last layer, the model folder and its
model.tflite, the report, evaluation and the audit."""
