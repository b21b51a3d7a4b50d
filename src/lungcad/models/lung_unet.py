"""``lung-unet``: a small MONAI U-Net that segments the lung fields of a chest radiograph.

One output channel: the logit of "lung" per pixel. Small on purpose (about 0.2 M parameters:
published U-Nets of 68 k-550 k parameters reach Dice 0.98 on JSRT at 256 px) so that ten folds
train on a 2-core CPU within the hour.
"""

from __future__ import annotations

from lungcad.models.registry import register_model


@register_model("lung-unet", input_size=256, in_channels=1, target_layer="", kind="segmenter",
                size_multiple=16, mean=0.5, std=0.25,
                description="lung-field segmentation: MONAI UNet, 5 levels (8-128 channels), "
                            "batch norm, one residual unit a level; 1 logit per pixel",
                defaults={"channels": [8, 16, 32, 64, 128], "num_res_units": 1})
def build_lung_unet(num_outputs: int = 1, in_channels: int = 1,
                    channels: list[int] | tuple[int, ...] = (8, 16, 32, 64, 128),
                    num_res_units: int = 1):
    from monai.networks.nets import UNet

    # one foreground class: a binary "task" (background, lung) gives one output, as for every
    # binary model in the registry
    return UNet(spatial_dims=2, in_channels=in_channels, out_channels=num_outputs,
                channels=tuple(int(c) for c in channels),
                strides=tuple(2 for _ in range(len(channels) - 1)),
                num_res_units=int(num_res_units), norm="batch")
