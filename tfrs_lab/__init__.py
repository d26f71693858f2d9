"""tfrs_lab: production recommender systems on TensorFlow Recommenders.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` (TFRS runs on Keras 2, i.e. ``tf-keras``)
and quiets TensorFlow's C++ logging (``TF_CPP_MIN_LOG_LEVEL=3`` unless already set), *before* TensorFlow is imported anywhere in the package.
Users therefore never need to set these variables themselves.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
