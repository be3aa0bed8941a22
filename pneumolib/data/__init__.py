"""Layer 1: files to images (DICOM included), transforms and augmentation, the lung segmenter and its crop, data folders and manifests, the decode cache."""
