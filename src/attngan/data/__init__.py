"""Data sets: CUB, COCO, image-caption folders and the built-in `shapes`, behind one interface."""

from attngan.data.dataset import Datasets, Sample, TextImageDataset, open_datasets
from attngan.data.records import Record, read_records

__all__ = ["Datasets", "Record", "Sample", "TextImageDataset", "open_datasets", "read_records"]
