"""The metrics layer: pure functions, arrays in, numbers out, in the style of
``torchmetrics.functional``; nothing here imports tasks, run folders or commands.

Every metric that a report bootstraps takes optional exam **weights**: ``None`` (each exam
once), ``(n,)``, or ``(R, n)`` for ``R`` bootstrap resamples at once, a weight being how often
the resample drew the exam. A resample's metric is then the metric of the exams repeated that
many times, computed without repeating them, so one pass serves a chunk of resamples
(:mod:`ecgexp.metrics.bootstrap`).

- :mod:`~ecgexp.metrics.bootstrap`: the resamples (a seeded stream of count chunks, memory
  bounded per chunk), intervals and the paired bootstrap;
- :mod:`~ecgexp.metrics.confusion`: confusion counts and the rates at fixed thresholds;
- :mod:`~ecgexp.metrics.ranking`: AUROC and average precision;
- :mod:`~ecgexp.metrics.errors`: MAE, RMSE, R² and Pearson's r of a regression;
- :mod:`~ecgexp.metrics.calibration`: reliability tables, the expected calibration error and
  the calibration slope of probabilities;
- :mod:`~ecgexp.metrics.decision_curve`: the net benefit of decision curves;
- :mod:`~ecgexp.metrics.significance`: DeLong's test of two AUROCs and Holm's correction;
- :mod:`~ecgexp.metrics.survival`: concordance (Harrell, Uno), time-dependent AUROC, Brier
  scores and Kaplan-Meier estimates of time-to-event predictions;
- :mod:`~ecgexp.metrics.weights`: the exam weights every weighted metric accepts.
"""
