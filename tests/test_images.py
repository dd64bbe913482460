import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from mmsr_serve.errors import ImageError
from mmsr_serve.images import MAX_DECODED_PIXELS, decode_image, encode_image, load_image


def jpeg(size: tuple[int, int]) -> bytes:
    return encode_image(Image.radial_gradient("L").convert("RGB").resize(size), "JPEG")


async def test_every_source_kind_loads_to_the_same_bounded_image(tmp_path: Path) -> None:
    data = jpeg((1600, 1200))
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    with Image.open(io.BytesIO(data)) as pil:
        sources = [data, path, str(path), url, pil.convert("RGB")]
        loaded = [await load_image(s, max_pixels=672 * 672) for s in sources]
    for image in loaded:
        w, h = image.size
        assert w * h <= 672 * 672 and abs(w / h - 4 / 3) < 0.02
    assert loaded[0].sha256 == loaded[1].sha256 == loaded[3].sha256  # content, not source


async def test_bad_images_are_image_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="cannot decode"):
        await load_image(b"GIF89a broken")
    with pytest.raises(ImageError, match="not found"):
        await load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="data:image"):
        await load_image("data:text/plain;base64,aGk=")
    with pytest.raises(ImageError, match="base64"):
        await load_image("data:image/png;base64,@@@")
    with pytest.raises(ImageError, match="bytes, more than"):
        await load_image(jpeg((64, 64)), max_bytes=100)


def test_decompression_bombs_are_refused_before_decoding() -> None:
    side = int(MAX_DECODED_PIXELS**0.5) + 100
    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG")  # a few kB on the wire
    with pytest.raises(ImageError, match="pixels, more than"):
        decode_image(buf.getvalue())


def test_extreme_aspect_ratios_are_refused() -> None:
    with pytest.raises(ImageError, match="more than 199 times apart"):
        decode_image(encode_image(Image.new("RGB", (600, 2))))
    assert decode_image(encode_image(Image.new("RGB", (398, 2)))).size[0] == 398


def test_file_data_url_keeps_web_formats_and_reencodes_others(tmp_path: Path) -> None:
    from mmsr_serve.images import file_data_url

    image = Image.new("RGB", (8, 6), "red")
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "b.bmp")
    url = file_data_url(tmp_path / "a.png")
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == (tmp_path / "a.png").read_bytes()
    bmp = file_data_url(tmp_path / "b.bmp")
    assert bmp.startswith("data:image/png;base64,")
    with pytest.raises(ImageError, match="cannot read image"):
        file_data_url(tmp_path / "missing.jpg")


def test_the_exif_orientation_is_applied_and_such_bytes_are_never_sent_as_they_are() -> None:
    import io

    from PIL import ExifTags

    from mmsr_serve.images import decode_image

    wide = Image.new("RGB", (40, 20), "white")
    wide.paste((255, 0, 0), (0, 0, 10, 20))  # red on the left
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # "rotate 90 clockwise to view"
    buf = io.BytesIO()
    wide.save(buf, "JPEG", exif=exif, quality=95)
    decoded = decode_image(buf.getvalue())
    assert decoded.size == (20, 40)  # upright: taller than wide
    red, green, blue = decoded.image.getpixel((10, 2))  # the red band is now at the top
    assert red > 200 and green < 60 and blue < 60
    assert decoded.encoded is None  # the server would decode the bytes sideways
    plain = io.BytesIO()
    wide.save(plain, "JPEG", quality=95)
    assert decode_image(plain.getvalue()).encoded is not None


def test_only_web_and_camera_formats_are_decoded() -> None:
    import io

    from mmsr_serve.errors import ImageError
    from mmsr_serve.images import bytes_data_url, decode_image

    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), "blue").save(buf, fmt)
        assert decode_image(buf.getvalue()).size == (8, 8)
    for fmt in ("ICNS", "PPM", "TGA", "PCX"):  # PIL reads these; the server does not
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), "blue").save(buf, fmt)
        with pytest.raises(ImageError):
            decode_image(buf.getvalue())
        with pytest.raises(ImageError):
            bytes_data_url(buf.getvalue())
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n"
    with pytest.raises(ImageError):  # never reaches Ghostscript
        decode_image(eps)
