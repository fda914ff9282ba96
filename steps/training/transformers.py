"""Where models trained before the package existed look for their prediction-time function.

Models pickled by earlier versions of this project name
``steps.training.transformers.missing_as_nan``; unpickling them (the champion
in the model gate, packaging, batch scoring) imports this module. New models
name ``tabular_mlops.core.transformers``.
"""

from tabular_mlops.core.transformers import missing_as_nan

__all__ = ["missing_as_nan"]
