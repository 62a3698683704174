"""ImageNet-1K (ILSVRC2012) official archives, read in place.

``ILSVRC2012_img_train.tar`` holds one tar per class (``n01440764.tar`` ...); ``ILSVRC2012_img_val.tar``
holds ``ILSVRC2012_val_00000001.JPEG`` ...; the devkit ``ILSVRC2012_devkit_t12.tar.gz`` holds
``data/meta.mat`` (synsets: ILSVRC2012_ID, WNID, words, num_children) and
``data/ILSVRC2012_validation_ground_truth.txt`` (ILSVRC2012_ID per validation image). Labels are the
sorted-WNID indices (torchvision's and timm's convention); the validation set is the ``test`` split.
"""
from __future__ import annotations

import io
import tarfile

import numpy as np

from ..archive import check_member
from . import RawDataset, RawSplit, find_one


def _devkit(trees):
    from scipy.io import loadmat
    tree, dk = find_one(trees, "ILSVRC2012_devkit_t12.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(tree.read(dk)), mode="r:gz") as tf:
        files = {}
        for m in tf:
            name = check_member(m, dk)
            if name.endswith(("data/meta.mat", "data/ILSVRC2012_validation_ground_truth.txt")) and m.isfile():
                files[name.rsplit("/", 1)[-1]] = tf.extractfile(m).read()
    syn = loadmat(io.BytesIO(files["meta.mat"]), squeeze_me=True)["synsets"]
    leaves = [s for s in syn if int(s["num_children"]) == 0]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in leaves}
    words = {str(s["WNID"]): str(s["words"]) for s in leaves}
    gt = [int(x) for x in files["ILSVRC2012_validation_ground_truth.txt"].decode().split()]
    return id_to_wnid, words, gt


def read_imagenet_archives(trees, info) -> RawDataset:
    id_to_wnid, words, gt = _devkit(trees)
    wnids = sorted(id_to_wnid.values())
    index = {w: i for i, w in enumerate(wnids)}
    ttree, tname = find_one(trees, "ILSVRC2012_img_train.tar")
    vtree, vname = find_one(trees, "ILSVRC2012_img_val.tar")
    for t, n in ((ttree, tname), (vtree, vname)):
        if not t.is_archive and not (t.root / n).is_file():
            raise ValueError(f"{n} must be a file")
    tpath = ttree.root if ttree.is_archive else ttree.root / tname
    vpath = vtree.root if vtree.is_archive else vtree.root / vname
    if ttree.is_archive or vtree.is_archive:
        raise ValueError("point the ImageNet source at the folder holding the three ILSVRC2012 archives")

    # Listing pass: uncompressed tars seek over member data, so this reads headers only.
    train_names = []
    with tarfile.open(tpath, "r:") as outer:
        for m in outer:
            name = check_member(m, tname)
            if not name.endswith(".tar"):
                continue
            wnid = name.rsplit("/", 1)[-1][:-4]
            if wnid not in index:
                raise ValueError(f"{tname}: class archive {name} is not one of the devkit's 1000 synsets")
            with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                for im in inner:
                    iname = check_member(im, name)
                    if im.isfile():
                        train_names.append((wnid, iname))
    train_names.sort(key=lambda t: (t[0], t[1]))
    with tarfile.open(vpath, "r:") as vt:
        val_names = sorted(check_member(m, vname) for m in vt if m.isfile())
    if len(val_names) != len(gt):
        raise ValueError(f"{vname} holds {len(val_names)} images but the devkit ground truth has {len(gt)}")

    def train_items(idx):
        pos = {(train_names[i][0], train_names[i][1]): p for p, i in enumerate(idx)}
        wanted = {w for w, _ in pos}
        with tarfile.open(tpath, "r:") as outer:
            for m in outer:
                wnid = m.name.rsplit("/", 1)[-1][:-4]
                if wnid not in wanted:
                    continue
                with tarfile.open(fileobj=outer.extractfile(m), mode="r:") as inner:
                    for im in inner:
                        key = (wnid, check_member(im, m.name))
                        if key in pos:
                            yield pos[key], inner.extractfile(im).read()

    def val_items(idx):
        pos = {val_names[i]: p for p, i in enumerate(idx)}
        with tarfile.open(vpath, "r:") as vt:
            for m in vt:
                name = check_member(m, vname)
                if name in pos:
                    yield pos[name], vt.extractfile(m).read()

    splits = {
        "train": RawSplit(np.array([index[w] for w, _ in train_names], dtype=np.int64), "encoded",
                          items=train_items, names=[f"{w}/{n}" for w, n in train_names]),
        "test": RawSplit(np.array([index[id_to_wnid[g]] for g in gt], dtype=np.int64), "encoded",
                         items=val_items, names=val_names),
    }
    return RawDataset("imagenet_archives", wnids, splits, extra={"class_words": [words[w] for w in wnids]})
