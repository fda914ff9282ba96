"""Score a model exported by ``python run.py export --format onnx`` inside any program.

Needs onnxruntime and numpy, nothing else: no scikit-learn, pandas, ZenML or
MLflow. Copy this folder beside ``model.onnx`` and ``manifest.json``::

    from embedded import EmbeddedModel

    model = EmbeddedModel.load("path/to/export")          # checks the file's checksum
    model.predict([{"mean radius": 17.99, ...}])          # labels, by the model's rule
    model.predict_proba([{...}])                          # one row of probabilities each

or from a shell: ``python -m embedded path/to/export rows.csv`` (or rows.json, or -).
"""

from embedded.scorer import EmbeddedModel, InvalidRowError

__all__ = ["EmbeddedModel", "InvalidRowError"]
