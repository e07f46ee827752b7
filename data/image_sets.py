"""Readers of the image data sets of the one-class experiments: MNIST, CIFAR-10 and image folders.

All return :class:`ImageSplits`: uint8 arrays N x C x H x W with integer labels, one per available split
('train', 'test'). Where they are read from, under ``--DataRoot``:

* MNIST: the four IDX files (``train-images-idx3-ubyte`` ..., gzip-compressed or not) in ``MNIST/raw/``,
  ``MNIST/`` or ``mnist/``. ``--Download True`` lets torchvision fetch them into ``MNIST/raw/``.
* CIFAR-10: torchvision's ``cifar-10-batches-py/`` (``--Download True`` fetches it), or PNG folders
  ``cifar10/{train,test}/<class>/*.png`` (either split may be missing: with the test split alone the pooled
  protocol applies).
* any other name: ``<DataRoot>/<Dataset>/<class>/*.png`` (or .jpg), one split.
"""
import gzip
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.readers import DataFormatError, is_hidden, load_image

MNIST_FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
               'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
MNIST_FOLDERS = ('MNIST/raw', 'MNIST', 'mnist')
CIFAR_FOLDERS = ('cifar10', 'CIFAR10', 'cifar-10')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
IDX_TYPES = {0x08: np.uint8}


@dataclass
class ImageSplits:
    """Images (uint8, N x C x H x W) and labels per split, and the class names in label order."""
    splits: dict
    classes: list
    source: str

    @property
    def image_shape(self):
        return next(iter(self.splits.values()))[0].shape[1:]


def read_idx(path):
    """An IDX array (the MNIST format), from a plain or gzip-compressed file."""
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    try:
        with opener(path, 'rb') as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise DataFormatError(f'{path} is not readable ({error})') from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataFormatError(f'{path} is not an unsigned-byte IDX file')
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DataFormatError(f'{path} holds {body.size} values, its header promises {int(np.prod(shape))}')
    return body.reshape(shape)


def _find_file(folders, name):
    for folder in folders:
        for candidate in (folder / name, folder / f'{name}.gz'):
            if candidate.is_file():
                return candidate
    return None


def load_mnist(data_root, download=False):
    root = Path(data_root)
    if download:
        from torchvision.datasets import MNIST  # fetches into <root>/MNIST/raw
        with torchvision_reading('MNIST', root):
            for train in (True, False):
                MNIST(str(root), train=train, download=True)
    folders = [root / name for name in MNIST_FOLDERS]
    splits = {}
    for split, (images_name, labels_name) in MNIST_FILES.items():
        images, labels = _find_file(folders, images_name), _find_file(folders, labels_name)
        if images is None or labels is None:
            raise DataFormatError(f"MNIST file {images_name if images is None else labels_name}(.gz) is in none of "
                                  f"{', '.join(str(f) for f in folders)}; pass --Download True to fetch it")
        x, y = read_idx(images), read_idx(labels)
        if len(x) != len(y):
            raise DataFormatError(f'{images} has {len(x)} images but {labels} has {len(y)} labels')
        splits[split] = (x[:, None], y.astype(np.int64))
    return ImageSplits(splits, [str(d) for d in range(10)], f'MNIST IDX files in {images.parent}')


def shape_text(image):
    height, width, channels = image.shape
    return f'{width} x {height} with {channels} channel(s)'


def read_image_folder(folder):
    """``<folder>/<class>/*.png``: images (N x C x H x W uint8), labels, class names (sorted)."""
    folder = Path(folder)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not is_hidden(p)) if folder.is_dir() else []
    if not classes:
        raise DataFormatError(f'{folder} holds no class folders of images')
    images, labels, first = [], [], None
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir()
                       if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p))
        for path in files:
            images.append(load_image(path))
            labels.append(label)
            first = first or path
            if images[-1].shape != images[0].shape:
                raise DataFormatError(f'image {path} is {shape_text(images[-1])}, but {first} is '
                                      f'{shape_text(images[0])}: all images of a data set must have one size')
    if not images:
        raise DataFormatError(f'the class folders under {folder} hold no images ({", ".join(IMAGE_SUFFIXES)})')
    x = np.stack(images).transpose(0, 3, 1, 2)
    return x, np.array(labels, dtype=np.int64), classes


@contextmanager
def torchvision_reading(name, folder):
    """torchvision's errors while fetching or reading a data set (no network, a checksum that does not match, a
    missing batch file) as one sentence naming the folder."""
    try:
        yield
    except Exception as error:  # RuntimeError for damaged or missing files, URLError/OSError for the network
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataFormatError(f'{name} in {folder} could not be fetched or read (torchvision: {reason}); delete '
                              f'the folder and pass --Download True, or fetch the files yourself '
                              f'(docs/EXPERIMENTS.md)') from None


def load_cifar10(data_root, download=False):
    root = Path(data_root)
    if download or (root / 'cifar-10-batches-py').is_dir():
        from torchvision.datasets import CIFAR10
        splits = {}
        for split in ('train', 'test'):
            with torchvision_reading('CIFAR-10', root / 'cifar-10-batches-py'):
                data = CIFAR10(str(root), train=split == 'train', download=download)
            splits[split] = (data.data.transpose(0, 3, 1, 2).copy(), np.array(data.targets, dtype=np.int64))
        return ImageSplits(splits, list(data.classes), f'torchvision CIFAR-10 batches in {root}')
    for name in CIFAR_FOLDERS:
        folder = root / name
        available = [split for split in ('train', 'test') if (folder / split).is_dir()]
        if available:
            splits, classes = {}, None
            for split in available:
                x, y, split_classes = read_image_folder(folder / split)
                if classes is not None and split_classes != classes:
                    raise DataFormatError(f'{folder}: the train and test splits have different class folders')
                splits[split], classes = (x, y), split_classes
            return ImageSplits(splits, classes, f'CIFAR-10 PNG folders in {folder} ({", ".join(available)})')
    raise DataFormatError(f"CIFAR-10 is in none of {root / 'cifar-10-batches-py'}, "
                          f"{', '.join(str(root / n) for n in CIFAR_FOLDERS)} (train/ and test/ class folders); "
                          f"pass --Download True to fetch it")


def load_image_folder(data_root, name, download=False):
    if download:
        raise DataFormatError(f'--Download fetches MNIST and CIFAR10 only, not {name}')
    x, y, classes = read_image_folder(Path(data_root) / name)
    return ImageSplits({'test': (x, y)}, classes, f'image folders in {Path(data_root) / name}')
