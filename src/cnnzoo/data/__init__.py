"""Data: the lecture's "capture and annotate a dataset" step, for a user's own images.

`load_data(spec)` describes a data set (image folders, a CSV, `digits`, `synthetic`) without decoding
it; `ImageDataset` reads one split through a transform preset; `check_data` inspects every image;
`split_to_csv` writes a deterministic stratified split.
"""
from .check import CheckReport, check_data
from .datasets import DataSource, ImageDataset, Split, Unreadable, collate, load_data, open_image
from .split import split_to_csv, stratified_split
from .transforms import IMAGENET_MEAN, IMAGENET_STD, dataset_mean_std, eval_transform, train_transform

__all__ = [
    "CheckReport", "DataSource", "IMAGENET_MEAN", "IMAGENET_STD", "ImageDataset", "Split", "Unreadable",
    "check_data", "collate", "dataset_mean_std", "eval_transform", "load_data", "open_image", "split_to_csv",
    "stratified_split", "train_transform",
]
