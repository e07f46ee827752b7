"""Frames as they arrive, for live scoring (``script_testing.py --Stream SOURCE``, utils/live_stream.py).

A source is

* a **folder that is still being filled** (a recorder writing one image per frame, e.g. FFmpeg's ``-f image2
  -atomic_writing 1``): a frame is read as soon as its file appears, in natural name order. Files must appear whole
  (written under another name, then renamed), and each new name must sort after the ones already read. A folder
  never ends by itself: the stream runs until Ctrl-C or SIGTERM. A frame arrived when its file was last written;
* anything else **PyAV opens**: a video file, a URL (``rtsp://``, ``http://``), or a capture device with its
  FFmpeg input format (``--StreamFormat v4l2``). A video file is read at its frame rate, as a camera would deliver
  it (frame ``t`` not before ``t / rate`` seconds after the first); a URL or device delivers at its own pace. The
  stream ends with the source.

Every frame is prepared exactly as ``--Video`` prepares a frame (:func:`data.frame_stream.prepared_frame`), and is
labelled as ``--Video`` labels it: the file name for a folder, ``frame / rate`` seconds (3 decimals) otherwise.
"""
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.frame_stream import folder_frame, frame_image_files, prepared_frame
from data.layout import natural_key
from data.movies import DEFAULT_RATE, container_rate, decoded_images, open_movie
from data.readers import DataFormatError

POLL_SECONDS = 0.05  # how often a folder is listed while no new frame has appeared


@dataclass
class LiveFrame:
    pixels: np.ndarray  # uint8 H x W x C, as a prepared data set holds the frame
    label: str          # file name (folder) or time in seconds (PyAV source)
    arrival: float      # when the frame was available (time.time() clock)


def is_folder_source(source):
    return Path(source).is_dir()


def live_frames(source, size, channels, input_format=None, stop=None):
    """The frames of ``source`` (see the module docstring) as :class:`LiveFrame`, one at a time as they arrive,
    prepared at ``size`` (H, W) with ``channels`` channels; a folder is watched until ``stop`` (a
    ``threading.Event``) is set."""
    if is_folder_source(source):
        frames = folder_arrivals(Path(source), stop)
    elif '://' not in str(source) and not Path(source).exists():
        raise DataFormatError(f'--Stream {source} does not exist (nor is it a URL)')
    else:
        frames = movie_arrivals(source, input_format)
    for image, label, arrival in frames:
        yield LiveFrame(prepared_frame(image, size, channels), label, arrival)


def folder_arrivals(folder, stop=None):
    """(PIL image, file name, time written) of each frame file of ``folder`` as it appears, until ``stop`` is set
    (never, without one)."""
    seen, last, first = set(), None, None
    while stop is None or not stop.is_set():
        new = [file for file in frame_image_files(folder) if file.name not in seen]
        for file in new:
            if last is not None and natural_key(file.name) < natural_key(last):
                raise DataFormatError(f'frame {file} appeared after {last} but sorts before it: name the frames of '
                                      f'a --Stream folder so that they sort in the order they arrive')
            image = folder_frame(file, first)
            first = first or (file.name, image.size)
            seen.add(file.name)
            last = file.name
            yield image, file.name, file.stat().st_mtime
        if not new:
            time.sleep(POLL_SECONDS)


def movie_arrivals(source, input_format):
    """(PIL image, time label, arrival) of each frame PyAV decodes from ``source``; a video file is paced to its
    frame rate."""
    paced = Path(source).is_file()
    with open_movie(source, input_format) as container:
        rate = container_rate(container, DEFAULT_RATE)
        started = time.time()
        for index, image in enumerate(decoded_images(container, source)):
            arrival = time.time()
            if paced:
                arrival = started + index / rate
                time.sleep(max(0.0, arrival - time.time()))
            yield image, f'{index / rate:.3f}', arrival
