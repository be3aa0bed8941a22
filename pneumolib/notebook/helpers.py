"""What the numbered notebooks show, in one place: display, one run's views, views over seeds."""

from __future__ import annotations

from ..notebook.cohort_views import (  # noqa: F401 (re-exported: every name in one place)
    cohort_claim,
    cohort_measurements,
    cohort_newest,
    cohort_recipes,
    cohort_record,
)
from ..notebook.display import (  # noqa: F401 (re-exported: every name in one place)
    FIGURE_DPI,
    MAX_COLUMNS,
    area_text,
    caption,
    collapse_seed_flags,
    fmt,
    grouped,
    maps_checked,
    metrics_frame,
    metrics_of,
    one_class_epochs,
    show,
    span,
    table_parts,
    use_notebook_style,
    with_ci,
)
from ..notebook.run_views import (  # noqa: F401 (re-exported: every name in one place)
    augmentation_views,
    cam_gallery,
    cam_table,
    central_focus_demo,
    colour_census,
    compare_all,
    describe,
    fixed_image,
    gradcam,
    history,
    inference_paths,
    load_data,
    lung_focus_table,
    paired_difference,
    report,
    shifts_view,
    subset_vs_full,
    threshold_table,
    wall_time,
    weights_status,
)
from ..notebook.seed_views import (  # noqa: F401 (re-exported: every name in one place)
    HEADLINE_PENDING,
    ablation_table,
    audit_reading,
    budget,
    budget_check,
    checkpoint_table,
    headline,
    headline_markdown,
    log_vs_rerun,
    protocols,
    seed_overview,
    seed_table,
    shortcut_audit,
    stress_table,
)
from ..notebook.sensitivity import sensitivity  # noqa: F401 (re-exported: every name in one place)
