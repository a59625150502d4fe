"""Import path of the published ``distilled`` 0.1.0 (``from distilled.core import DataPoint``)."""

from distilld.datapoint import DataPoint
from distilld.processor import DistilledProcessor

__all__ = ["DataPoint", "DistilledProcessor"]
