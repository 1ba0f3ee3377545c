"""Vision tasks: image data, transfer learning with torchvision bodies, multi-label
classification, U-Net segmentation and activation heat maps."""
