"""The report's figures, drawn from run directories only (metrics.json, metrics.csv, checkpoints).

`plots` draws them (`SWEEP`: a sweep's, `RUN`: one run's); `style` says how every figure looks
(a regularizer's colour, marker, line style and hatching; bands over seeds; the λ axis) and how it
is written. Ready for a paper: `output(formats=("png", "pdf"), dpi=300)` writes every figure in
each format, PDF and SVG with their text as text (TrueType fonts, not paths).
"""

from reglab.figures.plots import (
    RUN,
    SWEEP,
    accuracy_vs_lambda,
    decision_boundaries,
    gap_vs_lambda,
    learning_curves,
    regularization_path,
    sparsity_vs_lambda,
    weight_histograms,
    weight_magnitudes,
)
from reglab.figures.style import (
    BANDS,
    COLORS,
    DPI,
    FORMATS,
    HATCHES,
    LABELS,
    LINESTYLES,
    MARKERS,
    STYLES,
    Output,
    band_text,
    color,
    label,
    output,
    plt,
    seed_band,
    series,
)

__all__ = [
    "RUN", "SWEEP", "accuracy_vs_lambda", "decision_boundaries", "gap_vs_lambda", "learning_curves",
    "regularization_path", "sparsity_vs_lambda", "weight_histograms", "weight_magnitudes",
    "BANDS", "COLORS", "DPI", "FORMATS", "HATCHES", "LABELS", "LINESTYLES", "MARKERS", "STYLES", "Output",
    "band_text", "color", "label", "output", "plt", "seed_band", "series",
]  # fmt: skip
