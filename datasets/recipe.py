"""A dataset's default training recipe, decided by the shape of its images, never by its name: a new
npz dataset gets what a registered one of the same shape gets.

- Colour images at least 16 pixels a side: the CIFAR recipe, a ResNet-18 trained 30 epochs in batches
  of 256 at lr 0.05, with random-crop + flip augmentation when the images are 32x32 (the crop pads by 4,
  the CIFAR convention).
- Anything else (grayscale digits, small images, feature maps of a few pixels): the MNIST recipe, an
  MLP on the flattened pixels, 3 epochs in batches of 128 at lr 0.05.

The arch is a name the methods layer builds (`mlp`, `resnet18`); methods may ask for more epochs.
"""

from dataclasses import dataclass

AUGMENTABLE_SIZE = (32, 32)   # crop-and-flip is the CIFAR recipe; it would mangle digits and 4x4 toys


@dataclass(frozen=True)
class Recipe:
    arch: str          # network family: "mlp" | "resnet18"
    epochs: int        # passes over the training set
    batch_size: int    # samples per optimizer step
    lr: float          # peak learning rate
    augment: bool      # random crop (pad 4) + horizontal flip of training batches


def recipe(input_shape: tuple[int, ...]) -> Recipe:
    """The recipe for images of `input_shape` (C, H, W)."""
    channels, size = input_shape[0], tuple(input_shape[1:])
    if channels == 3 and min(size) >= 16:
        return Recipe("resnet18", epochs=30, batch_size=256, lr=0.05, augment=size == AUGMENTABLE_SIZE)
    return Recipe("mlp", epochs=3, batch_size=128, lr=0.05, augment=False)
