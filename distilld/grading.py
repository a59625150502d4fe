"""Import path of the published ``distilled`` 0.1.0 (``from distilled.grading import LambdaGrader``)."""

from distilld.features import create_grading_functions
from distilld.graders import CategoricalGrader, GradingFunction, LambdaGrader, NumericGrader

__all__ = ["CategoricalGrader", "GradingFunction", "LambdaGrader", "NumericGrader", "create_grading_functions"]
