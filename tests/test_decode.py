"""The one image decoder (cnnzoo.data.decode): high bit depth scaled, not clipped; the same pixels everywhere."""
from __future__ import annotations

import io

import numpy as np
import pytest
from deploy_run import shared_run, write_digit_pngs
from PIL import Image

from cnnzoo.data.datasets import open_image
from cnnzoo.data.decode import ImageRejected, decode_image, header_pixels, to_mode


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _tiff(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="TIFF")
    return buf.getvalue()


RAMP = np.arange(256, dtype=np.uint8).reshape(16, 16)


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_png_scaled_like_its_8bit_copy(mode):
    values = RAMP.astype(np.uint16) * 257
    if mode == "I;16":
        data = _png(Image.fromarray(values))
    else:
        data = _tiff(Image.frombytes("I;16B", (16, 16), values.astype(">u2").tobytes()))
    assert Image.open(io.BytesIO(data)).mode == mode
    np.testing.assert_array_equal(np.asarray(decode_image(data, "L")), RAMP)
    np.testing.assert_array_equal(np.asarray(decode_image(data, "RGB"))[..., 1], RAMP)
    clipped = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert (clipped == 255).mean() > 0.9  # what Pillow's convert does, and what this decoder must not


def test_int32_and_float_modes():
    np.testing.assert_array_equal(np.asarray(to_mode(Image.fromarray(RAMP.astype(np.int32) * 257, "I"), "L")), RAMP)
    f = Image.fromarray(RAMP.astype(np.float32) / 255, "F")
    np.testing.assert_array_equal(np.asarray(decode_image(_tiff(f), "L")), RAMP)
    assert np.asarray(decode_image(_tiff(f), "RGB")).shape == (16, 16, 3)
    with pytest.raises(ImageRejected, match=r"only \[0, 1\]"):
        decode_image(_tiff(Image.fromarray(RAMP.astype(np.float32), "F")), "L")
    with pytest.raises(ImageRejected, match="16-bit ranges"):
        to_mode(Image.fromarray(np.full((4, 4), 70000, np.int32), "I"), "L")


def test_jpeg_decoded_at_reduced_size():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((1600, 1200, 3), np.uint8)).save(buf, format="JPEG")
    assert header_pixels(buf.getvalue()) == 1600 * 1200
    small = decode_image(buf.getvalue(), "RGB", size=200)
    assert small.size == (150, 200) or min(small.size) >= 150 and small.size[0] < 1200  # 1/8 scale: 150x200


def test_training_reads_16bit_files_like_predict(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(RAMP.astype(np.uint16) * 257).save(path)
    np.testing.assert_array_equal(np.asarray(open_image(str(path), "L")), RAMP)


def test_16bit_digit_predicts_as_its_8bit_copy(tmp_path_factory, tmp_path):
    from cnnzoo.deploy.predict import predict

    run = shared_run(tmp_path_factory)
    digits = write_digit_pngs(tmp_path / "d8", 6)
    wide = tmp_path / "d16"
    wide.mkdir()
    for path, _ in digits:
        a = np.asarray(Image.open(path)).astype(np.uint16) * 257
        Image.fromarray(a).save(wide / path.name)
    r8 = predict(run, [str(tmp_path / "d8")], top_k=1)
    r16 = predict(run, [str(wide)], top_k=1)
    assert not r16.failures and len(r16.predictions) == 6
    assert [p.top[0][0] for p in r16.predictions] == [p.top[0][0] for p in r8.predictions]
    assert [p.top[0][1] for p in r16.predictions] == pytest.approx([p.top[0][1] for p in r8.predictions])
