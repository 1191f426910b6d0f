"""The report's figures, drawn from run directories only (metrics.json, metrics.csv, checkpoints): `plots` draws
them (`SWEEP`: a sweep's, `RUN`: one run's); `style` says how every figure looks and is written (docs/report.md).
"""

from reglab.figures.plots import RUN, SWEEP, accuracy_vs_lambda, gap_vs_lambda, learning_curves
from reglab.figures.style import (
    BANDS,
    DPI,
    FORMATS,
    HATCHES,
    LINESTYLES,
    MARKERS,
    Output,
    band_text,
    label,
    output,
    plt,
    series,
    shared_layout,
)

__all__ = [
    "RUN", "SWEEP", "accuracy_vs_lambda", "gap_vs_lambda", "learning_curves",
    "BANDS", "DPI", "FORMATS", "HATCHES", "LINESTYLES", "MARKERS", "Output", "band_text", "label", "output", "plt",
    "series", "shared_layout",
]  # fmt: skip
