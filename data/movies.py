"""Frames of video files (``.avi``, ``.mp4``), for sources that ship videos instead of frames (CUHK Avenue,
ShanghaiTech's training set). Decoding uses PyAV (FFmpeg), an optional dependency: it is imported only when a
source holds video files, and its absence is one sentence saying how to install it.
"""
from pathlib import Path

from data.layout import natural_key
from data.readers import DataFormatError

MOVIE_SUFFIXES = ('.avi', '.mp4', '.mov', '.mkv')


def _av():
    try:
        import av
    except ImportError:
        raise DataFormatError('this source holds video files (.avi), which need PyAV to decode: pip install av') \
            from None
    return av


def count_frames(path):
    """The number of frames of a video file, from its packets (no decoding)."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return sum(1 for packet in container.demux(video=0) if packet.size)
    except Exception as error:  # FFmpeg's errors for damaged or foreign files vary
        raise DataFormatError(f'{path} is not a readable video file ({type(error).__name__}: {error})') from None


def movie_frames(path):
    """The frames of a video file in order, as PIL images."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_image()
    except DataFormatError:
        raise
    except Exception as error:
        raise DataFormatError(f'{path} could not be decoded ({type(error).__name__}: {error})') from None


def movie_files(folder):
    """The video files of a folder, in name order."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in MOVIE_SUFFIXES),
                  key=lambda p: natural_key(p.name))
