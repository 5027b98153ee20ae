"""Evaluation metrics for binary decisions (pure numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, accuracy and the confusion matrix of binary decisions.

    ``confusion_matrix`` is ``[[tn, fp], [fn, tp]]`` (rows: truth normal, anomalous; columns:
    predicted normal, anomalous), as scikit-learn lays it out. Undefined ratios are 0.
    """
    t = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in shape")
    tp = int((t & p).sum())
    fp = int((~t & p).sum())
    fn = int((t & ~p).sum())
    tn = int((~t & ~p).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / len(t) if len(t) else 0.0,
        "support": int(len(t)),
        "positives": int(t.sum()),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }
