"""Frames of video files (``.avi``, ``.mp4``), for sources that ship videos instead of frames (CUHK Avenue,
ShanghaiTech's training set). Decoding uses PyAV (FFmpeg), an optional dependency: it is imported only when a
source holds video files, and its absence is one sentence saying how to install it. Also writes MP4 files (the
overlay movie of ``script_testing.py --Video --Plots True``).
"""
from contextlib import contextmanager

from data.layout import files_with_suffixes
from data.readers import DataFormatError
from utils.files import replace_atomically

MOVIE_SUFFIXES = ('.avi', '.mp4', '.mov', '.mkv')
DEFAULT_RATE = 25  # frames per second where a source states none (a folder of frames, a stream without a rate)


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


@contextmanager
def open_movie(source, input_format=None):
    """The PyAV container of ``source``: a video file, a URL or a capture device (``input_format``: FFmpeg's input
    format, ``-f``, which a device needs, e.g. ``v4l2``)."""
    av = _av()
    try:
        container = av.open(str(source), format=input_format)
    except Exception as error:  # FFmpeg's errors for damaged, foreign or unreachable sources vary
        raise DataFormatError(f'{source} could not be decoded ({type(error).__name__}: {error})') from None
    with container:
        if not container.streams.video:
            raise DataFormatError(f'{source} has no video stream')
        yield container


def container_rate(container, default):
    """The frame rate of an open container's video (frames per second), or ``default`` when it states none."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else default


def decoded_images(container, source):
    """The frames of an open container's video in order, as PIL images."""
    try:
        for frame in container.decode(video=0):
            yield frame.to_image()
    except Exception as error:
        raise DataFormatError(f'{source} could not be decoded ({type(error).__name__}: {error})') from None


def movie_frames(path):
    """The frames of a video file in order, as PIL images."""
    with open_movie(path) as container:
        yield from decoded_images(container, path)


def movie_files(folder):
    """The video files of a folder, in natural name order."""
    return files_with_suffixes(folder, MOVIE_SUFFIXES)


def movie_rate(path, default):
    """The frame rate of a video file (frames per second), or ``default`` when it has none or is no video file."""
    try:
        with open_movie(path) as container:
            return container_rate(container, default)
    except DataFormatError:  # a folder of frames, or a file without a readable rate: the default will do
        return default


MOVIE_CODECS = ('libx264', 'mpeg4')  # H.264 where FFmpeg has it, else MPEG-4 part 2; both play in browsers/VLC


def write_movie(path, frames, fps):
    """Encode RGB uint8 frames (H x W x 3, even H and W) into an MP4 file; False (nothing written) when PyAV or
    an encoder is missing. ``frames`` is consumed one at a time."""
    try:
        av = _av()
        codec = next(name for name in MOVIE_CODECS if _has_encoder(av, name))
    except (DataFormatError, StopIteration):
        return False

    def encode(file):
        with av.open(file, 'w', format='mp4') as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream(codec, rate=round(fps))
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = 'yuv420p'
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
            if stream is not None:
                container.mux(stream.encode())

    replace_atomically(path, encode)
    return True


def _has_encoder(av, name):
    try:
        av.codec.Codec(name, 'w')
    except Exception:  # PyAV raises its own UnknownCodecError, whose module moved between versions
        return False
    return True
