"""distilld: forward a representative share of a stream, per key, over a sliding window.

The library API follows the published ``distilled`` 0.1.0 package.
"""

from distilld.analysis import ProportionCalculator, VectorAnalyzer
from distilld.datapoint import DataPoint
from distilld.features import FeatureConfigError, build_graders, create_grading_functions
from distilld.graders import (
    CategoricalGrader,
    GradingFunction,
    LambdaGrader,
    NumericGrader,
    OpenCategoricalGrader,
)
from distilld.processor import DistilledProcessor

__version__ = "0.1.0"

__all__ = [
    "CategoricalGrader",
    "DataPoint",
    "DistilledProcessor",
    "FeatureConfigError",
    "GradingFunction",
    "LambdaGrader",
    "NumericGrader",
    "OpenCategoricalGrader",
    "ProportionCalculator",
    "VectorAnalyzer",
    "__version__",
    "build_graders",
    "create_grading_functions",
]
