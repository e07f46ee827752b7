"""Frames of video files (``.avi``, ``.mp4``), for sources that ship videos instead of frames (CUHK Avenue,
ShanghaiTech's training set). Decoding uses PyAV (FFmpeg), an optional dependency: it is imported only when a
source holds video files, and its absence is one sentence saying how to install it. Also writes MP4 files (the
overlay movie of ``script_testing.py --Video --Plots True``).
"""
from data.layout import files_with_suffixes
from data.readers import DataFormatError
from utils.files import replace_atomically

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
    """The video files of a folder, in natural name order."""
    return files_with_suffixes(folder, MOVIE_SUFFIXES)


def movie_rate(path, default):
    """The frame rate of a video file (frames per second), or ``default`` when it has none or is no video file."""
    try:
        av = _av()
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
        return float(rate) if rate else default
    except Exception:  # a folder of frames, or a file whose rate cannot be read: the default is fine for a preview
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
