"""Data: prepared-layout discovery, file readers, clip datasets and data preparation (``data.prepare_video``)."""
from data.layout import VideoLayout
from data.readers import DataFormatError
from data.video_datasets import VideoDataset, VideoDatasetOneDir, frame_to_tensor

__all__ = ['DataFormatError', 'VideoDataset', 'VideoDatasetOneDir', 'VideoLayout', 'frame_to_tensor']
