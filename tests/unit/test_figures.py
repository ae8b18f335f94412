"""``ecgexp.figures``: a small figure of known size and colours saved as PNG and PDF, read
back with Pillow (pixel size = inches x dpi, the colours drawn, RGB when opaque and RGBA when
not, the dpi stored) and by the PDF's header; the file replaced whole, the figure's own dpi
left as it was, and the refusal of another suffix by its text."""

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ecgexp.figures import save_figure


def red_figure(alpha: float = 1.0) -> Figure:
    figure = Figure(figsize=(2.0, 1.5), dpi=72)
    figure.patch.set_facecolor((1.0, 0.0, 0.0, alpha))
    return figure


def test_an_opaque_png_is_rgb_of_inches_times_dpi_with_the_colour_drawn(tmp_path):
    figure = red_figure()
    path = save_figure(figure, tmp_path / "a" / "b" / "plot.png", dpi=40, key="output_dir")
    assert path == tmp_path / "a" / "b" / "plot.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert image.size == (80, 60)  # 2 x 40, 1.5 x 40
        assert image.getpixel((40, 30)) == (255, 0, 0)
        assert image.info["dpi"] == pytest.approx((40, 40), abs=0.01)
    assert figure.dpi == 72
    assert sorted(p.name for p in path.parent.iterdir()) == ["plot.png"]  # no temporary left


def test_a_partly_transparent_png_keeps_its_alpha_channel(tmp_path):
    figure = red_figure(alpha=0.0)  # clear, but for an opaque blue left half
    figure.add_artist(Rectangle((0, 0), 0.5, 1, transform=figure.transFigure, color="blue"))
    path = save_figure(figure, tmp_path / "clear.PNG", dpi=10, key="output_dir")
    with Image.open(path) as image:
        assert image.mode == "RGBA" and image.size == (20, 15)
        assert image.getpixel((15, 7))[3] == 0
        assert image.getpixel((4, 7)) == (0, 0, 255, 255)


def test_a_pdf_by_its_suffix_and_an_existing_file_is_replaced(tmp_path):
    path = tmp_path / "plot.pdf"
    path.write_bytes(b"old")
    save_figure(red_figure(), path, dpi=50, key="output_dir")
    assert path.read_bytes().startswith(b"%PDF-")


def test_another_suffix_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"^figures: .*plot\.svg must end in \.png or \.pdf$"):
        save_figure(red_figure(), tmp_path / "sub" / "plot.svg", dpi=50, key="output_dir")
    assert list(tmp_path.iterdir()) == []
