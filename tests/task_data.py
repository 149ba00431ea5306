"""Small subsets of the embedded demo classification set for the task tests."""
import os

from paddleprune.cls import transforms as T
from paddleprune.datasets import ImageNet, demo


def write_subsets(folder, n_train=96, n_val=32, n_sens=16):
    """Write train/val/sens list files (every k-th line of the demo lists) into ``folder``."""
    root = demo.classification()
    out = {}
    for name, src, n in (("train", "train_list.txt", n_train), ("val", "val_list.txt", n_val),
                         ("sens", "val_list.txt", n_sens)):
        with open(os.path.join(root, src), encoding="utf-8") as f:
            lines = f.read().splitlines()
        step = max(1, len(lines) // n)
        path = os.path.join(folder, f"{name}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines[::step][:n]) + "\n")
        out[name] = path
    out["root"] = root
    return out


def train_transforms():
    return T.Compose([T.RandomCrop(crop_size=32, lower_scale=0.7), T.RandomHorizontalFlip(), T.Normalize()])


def dataset(lists, name, transforms=None):
    """A fresh ImageNet data set over one of the subset lists."""
    if transforms is None:
        transforms = train_transforms() if name == "train" else T.Compose([T.Normalize()])
    return ImageNet(lists["root"], lists[name], "labels.txt", transforms=transforms)
