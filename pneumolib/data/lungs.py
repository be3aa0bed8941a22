"""The shipped lung-field segmenter, its calibrated check, the lung-field crop box: every lung name in one place."""

from __future__ import annotations

from ..data.imaging import IMAGE_SUFFIXES  # noqa: F401 (re-exported: the suffixes a film may have)
from ..data.lungs_eval import (  # noqa: F401 (re-exported: every name in one place)
    COVERAGE_DILATIONS,
    COVERAGE_FILMS,
    COVERAGE_KEEP,
    calibrate_check,
    dice,
    evaluate_pairs,
    format_coverage,
    mask_coverage,
    overlay,
    plot_comparison,
    qc_on_films,
    qc_report,
    segment_files,
)
from ..data.lungs_masks import (  # noqa: F401 (re-exported: every name in one place)
    ENCODER_LEVELS,
    INPUT,
    SIZE,
    SPLITS,
    UNET,
    LungBox,
    LungCheck,
    MaskPair,
    annotated_mask,
    box_of,
    box_words,
    build_unet,
    crop_film,
    dilate,
    discover_masks,
    film_facts,
    film_problem,
    film_words,
    lung_numbers,
    lung_words,
    mask_film,
    mask_in_view,
    mask_stats,
    postprocess,
    read_mask,
    shipped_weights,
    squash,
    stack_pairs,
)
from ..data.lungs_segmenter import (  # noqa: F401 (re-exported: every name in one place)
    FORMAT,
    MAX_UNET_CHANNELS,
    LungSegmenter,
    shipped_digest,
    shipped_segmenter,
)
