"""Frames prepared one at a time: how ``data.prepare_video`` turns a source frame into a prepared one, and the
frames of a video you bring (``script_testing.py --Video``: a video file or a folder of frame images) prepared on
the fly the same way, without writing them.

A prepared frame is the source frame converted to grayscale (``L``) or RGB, resized to the prepared size with
bicubic resampling (PIL's, antialiased, like MATLAB's ``imresize``) and stored as JPEG at quality 75 (MATLAB
``imwrite``'s default). :func:`prepared_frames` encodes and decodes that JPEG in memory, so its frames hold
exactly the values a prepared data set's loader reads.
"""
import io
from pathlib import Path

from PIL import Image

from data.layout import files_with_suffixes
from data.movies import MOVIE_SUFFIXES, movie_frames
from data.readers import DataFormatError, FRAME_SUFFIXES, load_frame

JPEG_QUALITY = 75  # MATLAB imwrite's default for .jpg


def save_prepared_frame(image, target, size, channels):
    """Write the PIL ``image`` as a prepared frame (size H x W, 1 or 3 channels) to ``target``, a path or a
    binary file."""
    image = image.convert('L' if channels == 1 else 'RGB')
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    image.save(target, format='JPEG', quality=JPEG_QUALITY)


def frame_image_files(folder):
    """The frame images of a folder, in natural name order (``2.png`` before ``10.png``)."""
    return files_with_suffixes(folder, FRAME_SUFFIXES)


def folder_frame(file, first=None):
    """The frame image ``file`` of a folder, loaded; refused, naming it, when it is unreadable or not the size of
    the folder's first frame ``first`` (its name and size; most likely from another video: resizing it would hide
    that)."""
    try:
        with Image.open(file) as image:
            image.load()
    except Exception as error:  # PIL's errors for truncated or foreign bytes vary
        raise DataFormatError(f'frame {file} is not a readable image ({type(error).__name__})') from None
    if first and image.size != first[1]:
        raise DataFormatError(f'frame {file} is {image.size[0]} x {image.size[1]} pixels, but {first[0]} is '
                              f'{first[1][0]} x {first[1][1]}: the frames of one video folder must share one size')
    return image


def source_images(path):
    """The frames of a video file (decoded with PyAV) or of a folder of images, in order, as PIL images (a folder's
    checked by :func:`folder_frame`)."""
    path = Path(path)
    if path.is_dir():
        files = frame_image_files(path)
        if not files:
            raise DataFormatError(f'--Video {path} is a folder without frame images ({", ".join(FRAME_SUFFIXES)})')
        first = None
        for file in files:
            image = folder_frame(file, first)
            first = first or (file.name, image.size)
            yield image
    elif path.is_file():
        if path.suffix.lower() not in MOVIE_SUFFIXES:
            raise DataFormatError(f'--Video {path} is neither a folder of frames nor a video file '
                                  f'({", ".join(MOVIE_SUFFIXES)})')
        yield from movie_frames(path)
    else:
        raise DataFormatError(f'--Video {path} does not exist')


def prepared_frames(path, size, channels):
    """The frames of ``path`` (see :func:`source_images`) as uint8 H x W x C arrays, one at a time, with the
    values a prepared data set of that frame size and channel count holds."""
    for image in source_images(path):
        yield prepared_frame(image, size, channels)


def prepared_frame(image, size, channels):
    """The PIL ``image`` as the uint8 H x W x C array a prepared data set of that frame size and channel count
    holds (its JPEG encoded and decoded in memory)."""
    buffer = io.BytesIO()
    save_prepared_frame(image, buffer, size, channels)
    buffer.seek(0)
    return load_frame(buffer, channels)
