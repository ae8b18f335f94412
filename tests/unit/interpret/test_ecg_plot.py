"""ECG paper figures: panels per layout, saved PNG/PDF, the heatmap overlay and markers, input
checks and speed, on synthetic exams."""


import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import imread

from ecgexp.data.synthetic import LEADS, SAMPLING_RATE, synthesize_exams
from ecgexp.interpret.ecg_plot import (
    DISPLAY_NAMES,
    RHYTHM_LABEL,
    make_ecg_figure,
    render_example,
    save,
)

LEAD_LABELS = [DISPLAY_NAMES[lead] for lead in LEADS]


@pytest.fixture(scope="module")
def tracing():
    """One synthetic exam as (12, 4096) in mV, centre-padded with zeros."""
    tracings, _ = synthesize_exams(3, seed=0)
    return tracings[0].T


def lead_axes(figure):
    return [axes for axes in figure.axes if axes.get_label() in LEAD_LABELS]


def second_half_heatmap(tracing):
    heatmap = np.zeros_like(tracing)
    heatmap[:, tracing.shape[1] // 2:] = 1.0
    return heatmap


def rhythm_halves(figure, path):
    """Mean RGB (0-1) of the middle of the left and of the right half of the rhythm strip in
    the PNG saved to ``path``."""
    image = imread(save(figure, path))[..., :3]
    rhythm = next(axes for axes in figure.axes if axes.get_label() == RHYTHM_LABEL)
    box = rhythm.get_position()  # figure fraction, origin at the bottom left
    height, width = image.shape[:2]
    rows = slice(round((1 - box.y1) * height) + 2, round((1 - box.y0) * height) - 2)

    def columns(start, stop):  # fractions of the strip's width
        return slice(round((box.x0 + start * box.width) * width),
                     round((box.x0 + stop * box.width) * width))

    return (image[rows, columns(0.05, 0.45)].mean(axis=(0, 1)),
            image[rows, columns(0.55, 0.95)].mean(axis=(0, 1)))


def test_3x4_has_twelve_lead_panels_and_a_rhythm_strip(tracing):
    figure = make_ecg_figure(tracing, LEADS, SAMPLING_RATE, title="exam")
    assert sorted(axes.get_label() for axes in lead_axes(figure)) == sorted(LEAD_LABELS)
    assert [axes.get_label() for axes in figure.axes].count(RHYTHM_LABEL) == 1
    assert len(figure.axes) == 13
    by_label = {axes.get_label(): axes for axes in figure.axes}
    for column, leads in enumerate((("I", "II", "III"), ("aVR", "aVL", "aVF"),
                                    ("V1", "V2", "V3"), ("V4", "V5", "V6"))):
        for lead in leads:
            # Each column's data covers [2.5 c, 2.5 (c + 1)) s.
            times = by_label[lead].lines[0].get_xdata()
            assert times[0] == pytest.approx(2.5 * column)
            assert times[-1] == pytest.approx(2.5 * (column + 1) - 1 / SAMPLING_RATE)
    rhythm_times = by_label[RHYTHM_LABEL].lines[0].get_xdata()
    assert len(rhythm_times) == tracing.shape[1]
    np.testing.assert_array_equal(by_label[RHYTHM_LABEL].lines[0].get_ydata(), tracing[1])


def test_3x4_paper_scale_is_25_mm_per_s_and_10_mm_per_mv(tracing):
    figure = make_ecg_figure(tracing, LEADS, SAMPLING_RATE)
    width_in, height_in = figure.get_size_inches()
    for axes in figure.axes:
        box = axes.get_position()
        (x0, x1), (y0, y1) = axes.get_xlim(), axes.get_ylim()
        assert box.width * width_in * 25.4 / (x1 - x0) == pytest.approx(25.0)
        assert box.height * height_in * 25.4 / (y1 - y0) == pytest.approx(10.0)


def test_12x1_has_one_full_length_panel_per_lead(tracing):
    figure = make_ecg_figure(tracing, LEADS, SAMPLING_RATE, layout="12x1")
    panels = lead_axes(figure)
    assert [axes.get_label() for axes in panels] == LEAD_LABELS
    assert len(figure.axes) == 12
    for axes in panels:
        assert len(axes.lines[0].get_xdata()) == tracing.shape[1]


def test_png_and_pdf_are_written(tracing, tmp_path):
    figure = make_ecg_figure(tracing, LEADS, SAMPLING_RATE)
    png = save(figure, tmp_path / "sub" / "ecg.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000
    image = imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 600
    assert np.ptp(image[..., :3].reshape(-1, 3), axis=0).max() > 0.5  # not one colour
    pdf = save(make_ecg_figure(tracing, LEADS, SAMPLING_RATE), tmp_path / "ecg.pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        save(figure, tmp_path / "ecg.svg")


def test_heatmap_overlay_changes_the_image(tracing, tmp_path):
    plain = save(make_ecg_figure(tracing, LEADS, SAMPLING_RATE), tmp_path / "plain.png")
    overlaid = save(make_ecg_figure(tracing, LEADS, SAMPLING_RATE,
                                    heatmap=second_half_heatmap(tracing)),
                    tmp_path / "overlay.png")
    assert plain.read_bytes() != overlaid.read_bytes()


def test_overlay_is_visible_where_the_heatmap_is_high(tracing, tmp_path):
    plain_left, plain_right = rhythm_halves(make_ecg_figure(tracing, LEADS, SAMPLING_RATE),
                                            tmp_path / "plain.png")
    left, right = rhythm_halves(
        make_ecg_figure(tracing, LEADS, SAMPLING_RATE, heatmap=second_half_heatmap(tracing)),
        tmp_path / "overlay.png")
    np.testing.assert_allclose(left, plain_left, atol=1e-3)  # no heat: the paper as is
    assert np.abs(right - left).max() > 0.1
    assert np.abs(right - left).max() > 10 * np.abs(plain_right - plain_left).max()


def test_a_map_shared_by_all_leads_and_an_all_zero_map_are_accepted(tracing):
    shared = make_ecg_figure(tracing, LEADS, SAMPLING_RATE, heatmap=np.linspace(0, 3, 4096))
    assert len(shared.axes) == 14  # 13 panels and the colour scale
    assert len(lead_axes(make_ecg_figure(tracing, LEADS, SAMPLING_RATE,
                                         heatmap=np.zeros_like(tracing)))) == 12


def test_markers_style_draws_markers_with_area_from_the_published_formula(tracing, tmp_path):
    heatmap = second_half_heatmap(tracing)
    figure = make_ecg_figure(tracing, LEADS, SAMPLING_RATE, heatmap=heatmap, style="markers")
    rhythm = next(axes for axes in figure.axes if axes.get_label() == RHYTHM_LABEL)
    (markers,) = [item for item in rhythm.collections if isinstance(item, PathCollection)]
    sizes = markers.get_sizes()
    assert len(sizes) == tracing.shape[1] // 2  # only where the heatmap is non-zero
    np.testing.assert_allclose(sizes, 4.0 / np.mean(heatmap**2))
    assert markers.get_offsets()[:, 0].min() >= tracing.shape[1] / 2 / SAMPLING_RATE
    assert len(figure.axes) == 13  # no colour scale
    assert save(figure, tmp_path / "markers.png").stat().st_size > 20_000


@pytest.mark.parametrize(("tracing_shape", "leads", "layout", "message"), [
    ((4096, 12), LEADS, "3x4", r"\(leads, samples\).*transpose"),
    ((12, 4096), LEADS[:11], "3x4", r"one row per lead name \(11 given\)"),
    ((1, 12, 4096), LEADS, "3x4", "got shape"),
    ((8, 4096), ("DI", "DII", "V1", "V2", "V3", "V4", "V5", "V6"), "3x4", "all 12 leads"),
    ((12, 4096), (*LEADS[:11], "V7"), "12x1", "distinct names"),
    ((12, 4096), (*LEADS[:11], "DI"), "12x1", "distinct names"),
    ((12, 4096), LEADS, "6x2", "layout must be"),
])
def test_wrong_inputs_raise_clear_errors(tracing_shape, leads, layout, message):
    with pytest.raises(ValueError, match=message):
        make_ecg_figure(np.zeros(tracing_shape), leads, layout=layout)


def test_wrong_heatmap_or_style_raises(tracing):
    with pytest.raises(ValueError, match="heatmap must have the tracing's shape"):
        make_ecg_figure(tracing, LEADS, heatmap=np.ones((12, 100)))
    with pytest.raises(ValueError, match="non-negative"):
        make_ecg_figure(tracing, LEADS, heatmap=-np.ones_like(tracing))
    with pytest.raises(ValueError, match="style must be"):
        make_ecg_figure(tracing, LEADS, heatmap=np.ones_like(tracing), style="bars")


def test_eight_leads_in_12x1_and_alternative_lead_names(tracing):
    eight = tracing[[0, 1, 6, 7, 8, 9, 10, 11]]
    figure = make_ecg_figure(eight, ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6"),
                             layout="12x1")
    assert [axes.get_label() for axes in figure.axes] == ["I", "II", "V1", "V2", "V3", "V4",
                                                           "V5", "V6"]


def test_render_example_writes_a_small_readable_png(tmp_path):
    path = render_example(tmp_path / "heatmap_example.png")
    assert 20_000 < path.stat().st_size < 400_000
    assert imread(path).shape[:2] > (400, 600)
