"""The reference recipe: the common tutorial way to train SegFormer, rebuilt as the speed baseline.

It is the LearnOpenCV UW-Madison SegFormer tutorial's training, which most users start from: a
``Dataset`` that reads each PNG with OpenCV as 3-channel RGB, resizes it, runs albumentations with
``Normalize`` + ``ToTensorV2`` on the CPU (float32 tensors cross PCIe), a LightningModule whose step
upsamples the logits and computes Dice + cross-entropy plus a torchmetrics macro F1 logged every step,
AdamW with MultiStepLR, and ``Trainer(precision="16-mixed")`` eager. This module reproduces that shape
with albumentations 2.0.8's current argument names; it is only used by ``bench_train_speed.py`` and the
loss-equivalence check, never by the app.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TutorialDataset(Dataset):
    def __init__(self, pairs: list[tuple[str, str]], img_size: int, is_train: bool):
        self.pairs, self.img_size = pairs, img_size
        t = []
        if is_train:
            t += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5),
                  A.Affine(scale=(0.88, 1.12), translate_percent=(-0.12, 0.12), rotate=(-15, 15), p=0.5),
                  A.RandomBrightnessContrast(p=0.5),
                  A.CoarseDropout(num_holes_range=(5, 8), hole_height_range=(1, img_size // 20),
                                  hole_width_range=(1, img_size // 20), fill=0, fill_mask=0, p=0.5)]
        t += [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]
        self.transforms = A.Compose(t)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, path: str, flag: int):
        img = cv2.imread(path, flag)
        if flag == cv2.IMREAD_COLOR:
            img = img[:, :, ::-1]
        return cv2.resize(img, (self.img_size, self.img_size), interpolation=cv2.INTER_NEAREST)

    def __getitem__(self, i: int):
        image = self._load(self.pairs[i][0], cv2.IMREAD_COLOR)
        mask = self._load(self.pairs[i][1], cv2.IMREAD_GRAYSCALE)
        out = self.transforms(image=image, mask=mask)
        return out["image"], out["mask"].to(torch.long)


def tutorial_loader(pairs, img_size: int, batch_size: int, num_workers: int, is_train: bool) -> DataLoader:
    return DataLoader(TutorialDataset(pairs, img_size, is_train), batch_size=batch_size, shuffle=is_train,
                      num_workers=num_workers, pin_memory=True)


def dice_coef_loss(predictions, ground_truths, num_classes: int, dims=(1, 2), smooth: float = 1e-8):
    """The tutorial's loss: (1 - mean soft Dice over classes incl. background) + cross-entropy."""
    gt_oh = F.one_hot(ground_truths, num_classes=num_classes)
    pred = predictions.softmax(dim=1).permute(0, 2, 3, 1)
    intersection = (pred * gt_oh).sum(dim=dims)
    summation = pred.sum(dim=dims) + gt_oh.sum(dim=dims)
    dice = (2.0 * intersection + smooth) / (summation + smooth)
    return (1.0 - dice.mean()) + F.cross_entropy(predictions, ground_truths)


class TutorialModule(L.LightningModule):
    def __init__(self, model, num_classes: int, lr: float = 3e-4, epochs: int = 100):
        super().__init__()
        from torchmetrics.classification import MulticlassF1Score

        self.model, self.num_classes, self.lr, self.epochs = model, num_classes, lr, epochs
        self.train_f1 = MulticlassF1Score(num_classes=num_classes, average="macro")

    def forward(self, images):
        return self.model(pixel_values=images, return_dict=False)[0]

    def training_step(self, batch, batch_idx):
        images, masks = batch
        logits = self(images)
        logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        loss = dice_coef_loss(logits, masks, self.num_classes)
        self.train_f1(logits.detach(), masks)
        self.log("train/batch_loss", loss, prog_bar=True)
        self.log("train/batch_f1", self.train_f1, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[max(1, self.epochs // 2)], gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": sched}
