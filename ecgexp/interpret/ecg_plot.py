"""12-lead ECG figures on ECG paper, with an optional heatmap (e.g. a Grad-CAM attribution).

:func:`make_ecg_figure` builds a ``matplotlib.figure.Figure`` without pyplot (no global figure
state, no display needed) and :func:`save` writes it as PNG or PDF. The paper follows the
clinical print: 25 mm/s and 10 mm/mV at the figure's physical size, pink minor lines every
0.04 s and 0.1 mV, red major lines every 0.2 s and 0.5 mV, the trace in black. Every lead
panel is its own ``Axes`` whose ``get_label()`` is the lead's display name (I, II, III, aVR,
aVL, aVF, V1-V6); the rhythm strip's is ``"rhythm II"``.

Layouts
    ``"3x4"``: the standard print. Column c shows its three leads over [2.5 c, 2.5 (c + 1)) s
    (I/II/III, aVR/aVL/aVF, V1/V2/V3, V4/V5/V6), above a full-length lead II rhythm strip.
    ``"12x1"``: one row per lead over the whole recording, in the order given.

Heatmap styles
    ``"overlay"``: a colour band behind the trace whose opacity and colour follow the
    heatmap (normalised to its maximum), with a colour scale at the right.
    ``"markers"``: the published style (ecg-heatmaps / ecg-chagas): one plum scatter marker
    per sample on the trace, of area ``MARKER_SCALE * g**2 / max(mean(g**2), 0.001)`` pt**2,
    g being the heatmap normalised to its maximum and the mean taken over the whole map.

``render_example`` renders the README figure ``docs/heatmap_example.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from ecgexp.figures import save_figure
from ecgexp.signal.leads import CANONICAL_LEADS, normalise_lead_name

DISPLAY_NAMES = {"DI": "I", "DII": "II", "DIII": "III", "AVR": "aVR", "AVL": "aVL",
                 "AVF": "aVF", **{f"V{k}": f"V{k}" for k in range(1, 7)}}
COLUMNS_3X4 = (("DI", "DII", "DIII"), ("AVR", "AVL", "AVF"), ("V1", "V2", "V3"),
               ("V4", "V5", "V6"))  # leads of each column, top to bottom
RHYTHM_LEAD = "DII"
RHYTHM_LABEL = "rhythm II"
LAYOUTS = ("3x4", "12x1")
STYLES = ("overlay", "markers")

SEGMENT_S = 2.5  # s per column of the 3x4 layout
PAPER_SPEED = 25.0  # mm/s
GAIN = 10.0  # mm/mV
MM_PER_INCH = 25.4
MINOR_S, MAJOR_EVERY = 0.04, 5  # minor time division (s); a major line every 5 minor ones
MINOR_MV = 0.1  # minor voltage division (mV); major every 5 (0.5 mV)
ROW_MV = (3, 6)  # smallest and largest row height (mV); taller traces are clipped
ROW_MARGIN_MV = 0.6  # free height above the peak-to-peak amplitude of the tallest panel (mV)

PAPER_COLOR, MINOR_COLOR, MAJOR_COLOR = "white", "#f6c9c9", "#e58a8a"
TRACE_COLOR, TRACE_WIDTH = "black", 0.7  # line width in pt
HEATMAP_CMAP, HEATMAP_ALPHA = "plasma_r", 0.55  # overlay colour map and opacity at intensity 1
MARKER_COLOR, MARKER_SCALE = "plum", 4.0  # published marker style (area scale in pt**2)

MARGINS = {"left": 0.25, "right": 0.25, "top": 0.2, "bottom": 0.45}  # inches
TITLE_HEIGHT, SCALE_WIDTH = 0.35, 1.0  # inches for a title and for the overlay's colour scale
DPI = 150  # dots per inch of a saved PNG: 1 mm of paper is about 6 pixels


def save(figure: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Writes ``figure`` to ``path`` as PNG or PDF (by the suffix; PNG at ``dpi`` dots per
    inch, RGB for opaque ECG paper) through ``ecgexp.figures.save_figure``, creating parent
    folders, and returns the path."""
    return save_figure(figure, path, dpi, "paths.output_dir")


def make_ecg_figure(tracing, leads: Sequence[str], sampling_rate: float = 400,
                    heatmap=None, layout: str = "3x4", title: str | None = None,
                    style: str = "overlay") -> Figure:
    """ECG print of one exam, optionally with a heatmap drawn over the trace.

    Args:
        tracing: (leads, samples) in mV; zero padding is plotted as is.
        leads: name of each row of ``tracing`` (DI, DII, DIII, AVR, AVL, AVF, V1-V6; I/II/III
            and any case accepted). ``"3x4"`` needs all twelve, ``"12x1"`` any of them.
        sampling_rate: samples per second (Hz).
        heatmap: None, or non-negative values of shape (leads, samples), or (samples,) for one
            map shared by all leads; normalised to its maximum for display.
        layout: ``"3x4"`` or ``"12x1"`` (see the module docstring).
        title: text above the paper.
        style: ``"overlay"`` or ``"markers"``: how the heatmap is drawn.

    Returns:
        The figure, sized so that 1 s is 25 mm and 1 mV is 10 mm.
    """
    tracing, names = _checked_tracing(tracing, leads, sampling_rate, layout)
    if style not in STYLES:
        raise ValueError(f"make_ecg_figure: style must be one of {STYLES}, got {style!r}")
    values = None if heatmap is None else _normalised_heatmap(heatmap, tracing.shape)
    if values is not None and style == "markers":  # marker areas (pt**2), published formula
        values = MARKER_SCALE * values**2 / max(float(np.mean(values**2)), 1e-3)
    panels = _panels(layout, names, sampling_rate, tracing.shape[1])
    n_rows = panels[-1].row + 1
    row_mv = _row_height(tracing, panels)

    scale_width = SCALE_WIDTH if values is not None and style == "overlay" else 0.0
    title_height = TITLE_HEIGHT if title else 0.0
    paper_width = panels[-1].paper[1] * PAPER_SPEED / MM_PER_INCH  # inches
    row_height = row_mv * GAIN / MM_PER_INCH
    fig_width = MARGINS["left"] + paper_width + MARGINS["right"] + scale_width
    fig_height = MARGINS["bottom"] + n_rows * row_height + MARGINS["top"] + title_height
    figure = Figure(figsize=(fig_width, fig_height), dpi=DPI, facecolor=PAPER_COLOR)

    for panel in panels:
        left = MARGINS["left"] + panel.paper[0] * PAPER_SPEED / MM_PER_INCH
        bottom = MARGINS["bottom"] + (n_rows - 1 - panel.row) * row_height
        width = (panel.paper[1] - panel.paper[0]) * PAPER_SPEED / MM_PER_INCH
        axes = figure.add_axes((left / fig_width, bottom / fig_height, width / fig_width,
                                row_height / fig_height), label=panel.label)
        _draw_panel(axes, panel, tracing, values, style, row_mv, sampling_rate)
        if panel.row == n_rows - 1:
            _draw_seconds(axes, panel.paper, axes.get_ylim()[0])

    figure.text(MARGINS["left"] / fig_width, 0.12 / fig_height,
                f"{PAPER_SPEED:g} mm/s   {GAIN:g} mm/mV   grid {MINOR_S:g} s × {MINOR_MV:g} mV "
                f"(major {MINOR_S * MAJOR_EVERY:g} s × {MINOR_MV * MAJOR_EVERY:g} mV)   "
                f"{sampling_rate:g} Hz", fontsize=7, color="dimgrey")
    if title:
        figure.text(MARGINS["left"] / fig_width, 1 - 0.12 / fig_height, title,
                    ha="left", va="top", fontsize=11)
    if scale_width:
        _draw_heatmap_scale(figure, (MARGINS["left"] + paper_width + 0.3) / fig_width,
                            MARGINS["bottom"] / fig_height, 0.15 / fig_width,
                            n_rows * row_height / fig_height)
    return figure


def render_example(path: str | Path) -> Path:
    """Renders the README example: the first RBBB exam of ``synthesize_exams(50, seed=0)`` in
    the 3x4 layout with an illustrative heatmap (not a model attribution) that peaks on the
    QRS complexes: |d/dt| of lead DII smoothed over about 40 ms, less its median."""
    from ecgexp.data.synthetic import LEADS, SAMPLING_RATE, synthesize_exams

    tracings, labels = synthesize_exams(50, seed=0)
    exam = int(np.flatnonzero(labels["RBBB"].to_numpy() == 1)[0])
    tracing = tracings[exam].T
    slope = np.abs(np.gradient(tracing[LEADS.index("DII")])) * SAMPLING_RATE  # mV/s
    width = SAMPLING_RATE // 25  # samples: 40 ms
    kernel = np.exp(-0.5 * (np.arange(-4 * width, 4 * width + 1) / width) ** 2)
    smooth = np.convolve(slope, kernel / kernel.sum(), mode="same")
    heatmap = np.clip(smooth - np.median(smooth), 0, None)
    figure = make_ecg_figure(
        tracing, LEADS, SAMPLING_RATE, heatmap=heatmap,
        title=f"Synthetic exam {labels['exam_id'][exam]} (RBBB, age {labels['age'][exam]}): "
              "illustrative heatmap on the QRS complexes, not a model attribution")
    return save(figure, path)


class _Panel(NamedTuple):
    """One lead panel: its row (0 at the top), the time window of its data and of its paper
    ([start, stop) in s), its samples [first, last), its tracing row and its axes label."""

    row: int
    data: tuple[float, float]
    paper: tuple[float, float]
    first: int
    last: int
    lead_row: int
    label: str


def _panels(layout: str, names: list[str], sampling_rate: float,
            n_samples: int) -> list[_Panel]:
    """The panels of ``layout``, the bottom-right one last. In the 3x4 layout the paper of the
    last column reaches the end of the rhythm strip when the recording is longer than 10 s."""
    duration = n_samples / sampling_rate
    if layout == "12x1":
        windows = [(row, (0.0, duration), (0.0, duration), row, DISPLAY_NAMES[name])
                   for row, name in enumerate(names)]
    else:
        end = max(len(COLUMNS_3X4) * SEGMENT_S, duration)
        windows = [(row, (column * SEGMENT_S, (column + 1) * SEGMENT_S),
                    (column * SEGMENT_S, end if column == len(COLUMNS_3X4) - 1
                     else (column + 1) * SEGMENT_S),
                    names.index(lead), DISPLAY_NAMES[lead])
                   for column, column_leads in enumerate(COLUMNS_3X4)
                   for row, lead in enumerate(column_leads)]
        windows.append((len(COLUMNS_3X4[0]), (0.0, duration), (0.0, end),
                        names.index(RHYTHM_LEAD), RHYTHM_LABEL))
    return [_Panel(row, data, paper, *_sample_span(data, sampling_rate, n_samples), lead_row,
                   label) for row, data, paper, lead_row, label in windows]


def _draw_panel(axes: Axes, panel: _Panel, tracing: np.ndarray, heatmap: np.ndarray | None,
                style: str, row_mv: int, sampling_rate: float) -> None:
    """Paper, heatmap (normalised intensity for "overlay", marker areas in pt**2 for
    "markers"), trace and lead name of one panel; the panel is ``row_mv`` mV high."""
    signal = tracing[panel.lead_row, panel.first:panel.last]
    centre = _panel_centre(signal)
    ylim = (centre - row_mv / 2, centre + row_mv / 2)
    times = np.arange(panel.first, panel.last) / sampling_rate
    _draw_paper(axes, panel.paper, ylim)
    if heatmap is not None and style == "overlay":
        _draw_overlay(axes, heatmap[panel.lead_row, panel.first:panel.last],
                      panel.first / sampling_rate, panel.last / sampling_rate, ylim)
    elif heatmap is not None:
        area = heatmap[panel.lead_row, panel.first:panel.last]
        shown = area > 0
        axes.scatter(times[shown], signal[shown], s=area[shown], color=MARKER_COLOR,
                     linewidths=0, zorder=2)
    axes.plot(times, signal, color=TRACE_COLOR, linewidth=TRACE_WIDTH, zorder=3)
    axes.text(panel.paper[0] + 2 * MINOR_S, ylim[1] - MINOR_MV, panel.label.split()[-1],
              ha="left", va="top", fontsize=9, fontweight="bold", zorder=4,
              bbox={"facecolor": PAPER_COLOR, "edgecolor": "none", "alpha": 0.7, "pad": 1})
    axes.set(xlim=panel.paper, ylim=ylim)
    axes.set_axis_off()


def _checked_tracing(tracing, leads: Sequence[str], sampling_rate: float,
                     layout: str) -> tuple[np.ndarray, list[str]]:
    """The tracing as float64 (leads, samples) and the canonical lead names, after checks."""
    if layout not in LAYOUTS:
        raise ValueError(f"make_ecg_figure: layout must be one of {LAYOUTS}, got {layout!r}")
    if not sampling_rate > 0:
        raise ValueError(f"make_ecg_figure: sampling_rate must be positive, got {sampling_rate}")
    tracing = np.asarray(tracing, dtype=np.float64)
    names = [normalise_lead_name(lead) for lead in leads]
    if tracing.ndim != 2 or tracing.shape[0] != len(names) or tracing.shape[1] < 2:
        raise ValueError(f"make_ecg_figure: tracing must be (leads, samples) with one row per "
                         f"lead name ({len(names)} given), got shape {tracing.shape}; "
                         "transpose a (samples, leads) tracing")
    unknown = [lead for lead, name in zip(leads, names) if name not in DISPLAY_NAMES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"make_ecg_figure: leads must be distinct names among "
                         f"{list(CANONICAL_LEADS)}, got {list(leads)}")
    missing = [lead for lead in CANONICAL_LEADS if lead not in names]
    if layout == "3x4" and missing:
        raise ValueError(f"make_ecg_figure: the 3x4 layout needs all 12 leads; missing "
                         f"{missing} (got {len(names)} leads)")
    if not np.isfinite(tracing).all():
        raise ValueError("make_ecg_figure: tracing has non-finite values")
    return tracing, names


def _normalised_heatmap(heatmap, shape: tuple[int, int]) -> np.ndarray:
    """The heatmap broadcast to ``shape`` (leads, samples) and divided by its maximum (pass
    :func:`ecgexp.interpret.attribution.visible_intensity` to scale sparse maps)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.shape not in (shape, shape[1:]):
        raise ValueError(f"make_ecg_figure: heatmap must have the tracing's shape {shape} or "
                         f"({shape[1]},), got {heatmap.shape}")
    if not np.isfinite(heatmap).all() or (heatmap < 0).any():
        raise ValueError("make_ecg_figure: heatmap must be finite and non-negative (pass the "
                         "absolute value of a signed attribution)")
    peak = heatmap.max()
    return np.broadcast_to(heatmap / peak if peak > 0 else heatmap, shape)


def _sample_span(window: tuple[float, float], sampling_rate: float,
                 n_samples: int) -> tuple[int, int]:
    """First and one-past-last sample whose time (s) lies in [window[0], window[1])."""
    first, last = (min(n_samples, math.ceil(round(t * sampling_rate, 6))) for t in window)
    return first, last


def _row_height(tracing: np.ndarray, panels: list[_Panel]) -> int:
    """Row height (whole mV) that fits the tallest panel's peak-to-peak amplitude."""
    peak_to_peak = max((np.ptp(tracing[panel.lead_row, panel.first:panel.last])
                        for panel in panels if panel.last > panel.first), default=0.0)
    return int(np.clip(math.ceil(peak_to_peak + ROW_MARGIN_MV), *ROW_MV))


def _panel_centre(signal: np.ndarray) -> float:
    """Middle of the signal's range (mV) rounded to a major division, so that the grids of
    panels side by side line up; 0 for an empty panel."""
    if signal.size == 0:
        return 0.0
    major = MINOR_MV * MAJOR_EVERY
    return major * round((signal.max() + signal.min()) / 2 / major)


def _grid_lines(low: float, high: float, step: float, major: bool) -> np.ndarray:
    """Positions of the minor (``major`` False) or major grid lines in [low, high]."""
    indices = np.arange(math.ceil(round(low / step, 6)), math.floor(round(high / step, 6)) + 1)
    keep = (indices % MAJOR_EVERY == 0) == major
    return indices[keep] * step


def _draw_paper(axes: Axes, window: tuple[float, float], ylim: tuple[float, float]) -> None:
    """ECG paper: minor and major lines over ``window`` (s) × ``ylim`` (mV)."""
    for major, color, width in ((False, MINOR_COLOR, 0.4), (True, MAJOR_COLOR, 0.8)):
        vertical = [((x, ylim[0]), (x, ylim[1]))
                    for x in _grid_lines(*window, MINOR_S, major)]
        horizontal = [((window[0], y), (window[1], y))
                      for y in _grid_lines(*ylim, MINOR_MV, major)]
        axes.add_collection(LineCollection(vertical + horizontal, colors=color,
                                           linewidths=width, antialiaseds=False, zorder=1),
                            autolim=False)


def _draw_overlay(axes: Axes, intensity: np.ndarray, start: float, stop: float,
                  ylim: tuple[float, float]) -> None:
    """Colour band from ``start`` to ``stop`` (s) over the panel's height, above the grid and
    below the trace: colour and opacity follow ``intensity`` in [0, 1] (transparent at 0)."""
    if intensity.size == 0:
        return
    colours = colormaps[HEATMAP_CMAP](intensity)
    colours[:, 3] = HEATMAP_ALPHA * intensity
    axes.imshow(colours[np.newaxis], extent=(start, stop, *ylim), aspect="auto",
                interpolation="bilinear", zorder=1.5)


def _draw_heatmap_scale(figure: Figure, left: float, bottom: float, width: float,
                        height: float) -> None:
    """Vertical colour scale of the overlay on paper colour (figure-fraction position)."""
    axes = figure.add_axes((left, bottom, width, height), label="heatmap scale")
    levels = np.linspace(0, 1, 256)
    colours = colormaps[HEATMAP_CMAP](levels)
    colours[:, 3] = HEATMAP_ALPHA * levels
    axes.imshow(colours[:, np.newaxis], extent=(0, 1, 0, 1), origin="lower", aspect="auto")
    axes.set(xticks=[], yticks=[0, 0.5, 1])
    axes.yaxis.tick_right()
    axes.yaxis.set_label_position("right")
    axes.set_ylabel("heatmap (fraction of its scale)", fontsize=8)
    axes.tick_params(labelsize=7)


def _draw_seconds(axes: Axes, window: tuple[float, float], bottom: float) -> None:
    """Whole-second labels under the bottom row."""
    for second in range(math.ceil(window[0]), math.floor(window[1]) + 1):
        axes.text(second, bottom - 0.08, f"{second} s", ha="center", va="top", fontsize=7,
                  color="dimgrey", clip_on=False)
