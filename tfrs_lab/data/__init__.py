"""Data layer: MovieLens through TFDS (online or from a local archive), synthetic data, your own
files or frames (:func:`from_frame`, :func:`read_source`; docs/own-data.md), the prepared dataset
cache of your own files (:func:`prepare_dataset`, :func:`load_prepared`; as an Apache Beam pipeline
:func:`prepare_dataset_beam`), splits.

Importing this package is cheap: TensorFlow and TFDS are imported only when data is loaded.
"""

from tfrs_lab.data.movielens import (
    DATA_DIR_ENV,
    GENRE_NAMES,
    MOVIE_KEYS,
    NUM_GENRES,
    RATING_KEYS,
    SUPPORTED_DATASETS,
    SYNTHETIC,
    USER_FEATURE_KEYS,
    DataError,
    MovieLensData,
    default_data_dir,
    load_movielens,
)
from tfrs_lab.data.beam_prepare import prepare_dataset_beam
from tfrs_lab.data.prepared import PreparedDataset, load_prepared, prepare_dataset
from tfrs_lab.data.frames import from_frame
from tfrs_lab.data.readers import read_source
from tfrs_lab.data.spec import OWN, SourceSpec
from tfrs_lab.data.splits import (
    PROTOCOLS,
    SPLIT_NAMES,
    Split,
    SplitOptions,
    hash_buckets,
    hash_split,
    held_out_users_split,
    leave_last_out_split,
    make_split,
    predefined_split,
    sequence_order,
    time_split,
)
from tfrs_lab.data.synthetic import SyntheticSpec, write_synthetic_zip

__all__ = [
    "DATA_DIR_ENV",
    "DataError",
    "GENRE_NAMES",
    "MOVIE_KEYS",
    "MovieLensData",
    "NUM_GENRES",
    "OWN",
    "PROTOCOLS",
    "PreparedDataset",
    "RATING_KEYS",
    "SPLIT_NAMES",
    "SourceSpec",
    "SUPPORTED_DATASETS",
    "SYNTHETIC",
    "Split",
    "SplitOptions",
    "SyntheticSpec",
    "USER_FEATURE_KEYS",
    "default_data_dir",
    "from_frame",
    "hash_buckets",
    "hash_split",
    "held_out_users_split",
    "leave_last_out_split",
    "load_movielens",
    "load_prepared",
    "make_split",
    "predefined_split",
    "prepare_dataset",
    "prepare_dataset_beam",
    "read_source",
    "sequence_order",
    "time_split",
    "write_synthetic_zip",
]
