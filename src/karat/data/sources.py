"""What each dataset of the paper is, where its official files live, and how they are checked.

The URLs and checksums are the ones the dataset authors publish (the same ones torchvision checks).
``params.yaml`` may override ``url``/``md5``/``sha256`` (one archive) or ``files`` (name -> url, md5/sha256), and any dataset
may be supplied locally instead (``local`` list or ``KARAT_DATA_<NAME>``; see docs/DATA.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
SVHN_CLASSES = tuple(str(i) for i in range(10))
MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
# The official IDX files and the md5s torchvision checks (MNIST from its mirror: yann.lecun.com refuses many
# clients; same files).
_MNIST_MD5 = {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
_FASHION_MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}


@dataclass(frozen=True)
class RemoteFile:
    url: str
    filename: str
    md5: str | None = None
    sha256: str | None = None
    extract: bool = False          # a tar archive to unpack safely after verification


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    formats: tuple[str, ...]       # readers tried, in order, on what fetch produced
    files: tuple[RemoteFile, ...] = ()
    classes: tuple[str, ...] | None = None   # official label order, when the official files do not carry it
    downloadable: bool = True
    notes: str = ""
    extra: dict = field(default_factory=dict)
    # Images per split in the official release (the split `prepare` builds): a source with fewer or more is
    # incomplete or damaged, or not this dataset. params.yaml's datasets.<name>.expected_counts overrides.
    counts: dict | None = None


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo(
        "cifar10", ("cifar10_python", "imagefolder"),
        (RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                    md5="c58f30108f718f92721af3b95e74349a", extract=True),),
        classes=CIFAR10_CLASSES,
        counts={"train": 50000, "test": 10000}),
    "cifar100": DatasetInfo(
        "cifar100", ("cifar100_python", "imagefolder"),
        (RemoteFile("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
                    md5="eb9058c3a382ffc7106e4002c42a8d85", extract=True),),
        counts={"train": 50000, "test": 10000}),
    "imagenet": DatasetInfo(
        "imagenet", ("imagenet_archives", "imagefolder"), (), downloadable=False,
        notes="ImageNet-1K needs a login at image-net.org and is never downloaded automatically. Point "
              "KARAT_DATA_IMAGENET (or datasets.imagenet.local in params.yaml) at an ImageFolder tree "
              "(train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) or at a folder holding ILSVRC2012_img_train.tar, "
              "ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz.",
        extra={"archives": {"train": ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e"),
                            "val": ("ILSVRC2012_img_val.tar", "29b22e2961454d5413ddabcf34fc5622"),
                            "devkit": ("ILSVRC2012_devkit_t12.tar.gz", "fa75699e90414af021442c21a62c3abf")}},
        counts={"train": 1281167, "test": 50000}),
    "svhn": DatasetInfo(
        "svhn", ("svhn_mat", "imagefolder"),
        (RemoteFile("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "train_32x32.mat",
                    md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
         RemoteFile("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
                    md5="eb5a983be6a315427106f1b164d9cef3")),
        classes=SVHN_CLASSES,
        counts={"train": 73257, "test": 26032}),
    "flowers102": DatasetInfo(
        "flowers102", ("flowers102_official", "imagefolder"),
        (RemoteFile("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz", "102flowers.tgz",
                    md5="52808999861908f626f3c1f4e79d11fa", extract=True),
         RemoteFile("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat", "imagelabels.mat",
                    md5="e0620be6f572b9609742df49c70aed4d"),
         RemoteFile("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat", "setid.mat",
                    md5="a5357ecc9cb78c4bef273ce3793fc85c")),
        counts={"train": 2040, "test": 6149}),
    "mnist": DatasetInfo(
        "mnist", ("mnist_idx", "imagefolder"),
        tuple(RemoteFile(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", f, md5=m) for f, m in _MNIST_MD5.items()),
        classes=MNIST_CLASSES,
        counts={"train": 60000, "test": 10000}),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", ("mnist_idx", "imagefolder"),
        tuple(RemoteFile(f"http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{f}", f, md5=m)
              for f, m in _FASHION_MD5.items()),
        classes=FASHION_MNIST_CLASSES,
        counts={"train": 60000, "test": 10000}),
    "stl10": DatasetInfo(
        "stl10", ("stl10_binary", "imagefolder"),
        (RemoteFile("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "stl10_binary.tar.gz",
                    md5="91f7769df0f17e558f3565bffb0c7dfb", extract=True),),
        classes=STL10_CLASSES,
        counts={"train": 5000, "test": 8000}),
}


def dataset_info(name: str, spec: dict | None = None) -> DatasetInfo:
    """The built-in description of ``name``; a dataset unknown to the registry is ImageFolder-only.

    A params.yaml entry with ``url`` and ``md5``/``sha256`` replaces the official file list by that one
    archive (used for CIFAR and for the test server).
    """
    spec = spec or {}
    info = DATASETS.get(name)
    if info is None:
        info = DatasetInfo(name, ("imagefolder",), (), downloadable=False,
                           notes=f"dataset {name!r} has no official download; supply it locally as ImageFolder")
    if spec.get("files"):
        from .archive import is_archive
        files = []
        for fname, f in spec["files"].items():
            if not (f.get("md5") or f.get("sha256")):
                raise ValueError(f"datasets.{name}.files.{fname} has no md5 or sha256: a download is only "
                                 "accepted against a published checksum")
            files.append(RemoteFile(str(f["url"]), str(fname), md5=f.get("md5"), sha256=f.get("sha256"),
                                    extract=is_archive(fname)))
        return DatasetInfo(name, info.formats, tuple(files), classes=info.classes, downloadable=True,
                           notes=info.notes, extra=info.extra, counts=info.counts)
    if spec.get("url"):
        url = str(spec["url"])
        filename = url.rstrip("/").rsplit("/", 1)[-1]
        if not (spec.get("md5") or spec.get("sha256")):
            raise ValueError(f"datasets.{name}.url is set ({url}) but neither md5 nor sha256 is: a download "
                             "is only accepted against a published checksum")
        from .archive import is_archive
        info = DatasetInfo(name, info.formats,
                           (RemoteFile(url, filename, md5=spec.get("md5"), sha256=spec.get("sha256"),
                                       extract=is_archive(filename)),),
                           classes=info.classes, downloadable=True, notes=info.notes, extra=info.extra,
                           counts=info.counts)
    return info
