"""The torch `Dataset` of decoded films; and, for callers, every data name in one place."""

from __future__ import annotations

from typing import Callable

import torch

from ..core.config import View
from ..core.io import DataError  # noqa: F401 (re-exported: a data folder that cannot be used)
from ..data.cache import (  # noqa: F401 (the data layer's names, in one place)
    CACHE_ENV,
    DECODE_BUDGET,
    DEFAULT_MEMORY_BYTES,
    DISK_KEY,
    MEMORY_ENV,
    DecodedCache,
    budget_chunks,
    default_cache_dir,
    default_memory_bytes,
    file_digest,
    parse_bytes,
)
from ..data.hygiene import (  # noqa: F401 (the data layer's names, in one place)
    Hygiene,
    check_hygiene,
    crop_notes,
    file_rows,
    fingerprint,
    prepare,
    prescan,
)
from ..data.resources import Resources, as_resources  # noqa: F401 (the data layer's names, in one place)
from ..data.samples import (  # noqa: F401 (the data layer's names, in one place)
    IGNORED_NAMES,
    SPLITS,
    Sample,
    XRayData,
    patient_id,
    summarise_errors,
    unlabelled,
)
from ..data.sources import (  # noqa: F401 (the data layer's names, in one place)
    DATA_ENV,
    MANIFEST_COLUMNS,
    MANIFEST_TEST_FRACTION,
    SOURCE_SEP,
    Manifest,
    as_source,
    discover,
    discover_split,
    list_images,
    read_manifest,
    resolve_data_dir,
)
from ..data.splits import (  # noqa: F401 (the data layer's names, in one place)
    HOLDOUTS,
    VAL_MIN_PER_CLASS,
    apply_holdout,
    early_id_holdout,
    ensure_val,
    grouped_split,
    patient_family,
    patient_overlap,
    shared_patients,
    subsample,
)


class XRayDataset(torch.utils.data.Dataset):
    """Samples -> (model input, label, index); a label-free `transform` (a stress-test shift), then the preprocessing.

    With image_size and no preprocessing, items are the decoded uint8 1xHxW images themselves: training augments
    and preprocesses whole batches on the training device (augment.BatchAugment), so the loader only serves bytes."""

    def __init__(
        self,
        samples: list[Sample],
        preprocessing=None,
        transform: Callable | None = None,
        resources: Resources | None = None,
        image_size: int | View | None = None,
    ):
        self.samples, self.pre, self.transform = list(samples), preprocessing, transform
        self.resources = as_resources(resources)  # the context the films are decoded through (default: a new one)
        self.image_size = image_size or preprocessing.view  # the decode view (size and crop)

    @property
    def cache(self) -> DecodedCache:
        return self.resources.cache

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        x = torch.from_numpy(self.cache.get(s.path, self.image_size)).unsqueeze(0)
        if self.transform is not None:
            x = self.transform(x)
        return (self.pre(x) if self.pre is not None else x), s.label, i
