"""The one decode path for image files: any mode and size in, the model's channels and size out."""

import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup import images
from selfsup.images import decode, decode_files, walk_images


def gradient(width: int, height: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    return x.astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_mode_becomes_the_models_channels_and_size(tmp_path, mode, channels):
    image = Image.fromarray(gradient(60, 40)).convert(mode)
    image.save(tmp_path / "x.png")
    pixels, reason = decode(tmp_path / "x.png", 8, channels)
    assert reason is None and len(pixels) == 8 * 8 * channels


def test_a_grayscale_png_of_the_models_size_comes_back_unchanged(tmp_path):
    original = torch.randint(0, 256, (28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(original.numpy()).save(tmp_path / "x.png")
    images, unreadable = decode_files([tmp_path / "x.png"], 28, channels=1)
    assert not unreadable and torch.equal(images[0, 0], original)


def test_resize_squashes_to_a_square(tmp_path):
    # left half black, right half white, 4:1 wide: squashed (not cropped) the halves stay halves
    array = np.zeros((20, 80), dtype=np.uint8)
    array[:, 40:] = 255
    Image.fromarray(array).save(tmp_path / "wide.png")
    images, _ = decode_files([tmp_path / "wide.png"], 8, channels=1)
    assert (images[0, 0, :, :3] == 0).all() and (images[0, 0, :, 5:] == 255).all()


def test_the_resize_filters_every_pixel_in_as_bilinear_does(tmp_path):
    """Thin stripes (one pixel black, one white) shrunk 4×: a filter averages them to mid-grey, as PIL's bilinear
    resize does; picking pixels (nearest) would keep black and white."""
    array = np.zeros((32, 32), dtype=np.uint8)
    array[:, 1::2] = 255
    Image.fromarray(array).save(tmp_path / "stripes.png")
    images, _ = decode_files([tmp_path / "stripes.png"], 8, channels=1)
    expected = np.asarray(Image.fromarray(array).resize((8, 8), Image.BILINEAR, reducing_gap=2.0))
    assert torch.equal(images[0, 0], torch.from_numpy(expected.copy()))
    assert (images - 127.5).abs().max() < 10  # grey, not black and white


def test_unreadable_files_are_reported_by_position_and_left_black(tmp_path):
    Image.fromarray(gradient(10, 10)).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    images, unreadable = decode_files([tmp_path / "bad.jpg", tmp_path / "good.png", tmp_path / "gone.png"], 4, 3)
    assert set(unreadable) == {0, 2} and "cannot identify image file" in unreadable[0]
    assert str(tmp_path) not in unreadable[0]  # the caller names the file once
    assert "No such file" in unreadable[2]
    assert images[0].sum() == 0 and images[1].sum() > 0


def test_a_file_pillow_fails_on_in_any_way_is_unreadable_not_a_crash(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "good.png")
    data = bytearray((tmp_path / "good.png").read_bytes())
    at = data.index(b"IDAT")
    data[at - 4:at] = bytes(4)  # the pixel chunk's length 0: Pillow raises SyntaxError ("broken PNG file")
    (tmp_path / "broken.png").write_bytes(bytes(data))
    images, unreadable = decode_files([tmp_path / "broken.png", tmp_path / "good.png"], 4, 1)
    assert set(unreadable) == {0} and unreadable[0].startswith("SyntaxError: broken PNG file")
    assert images[0].sum() == 0 and images[1].sum() > 0


def test_workers_give_the_same_tensor_as_one_thread(tmp_path):
    paths = []
    for i in range(130):  # enough for two worker threads
        Image.fromarray(gradient(12 + i % 5, 9)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    one, _ = decode_files(paths, 6, 3, workers=1)
    two, _ = decode_files(paths, 6, 3, workers=2)
    assert torch.equal(one, two)


def test_walk_finds_images_at_any_depth_and_leaves_out_hidden_and_other_files(tmp_path):
    for name in ["a.PNG", "sub/b.jpg", "sub/deeper/c.jpeg", "notes.txt", ".hidden.png", ".cache/d.png"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    images, others = walk_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == ["a.PNG", "sub/b.jpg", "sub/deeper/c.jpeg"]
    assert [p.name for p in others] == ["notes.txt"]


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 16, dtype=np.float64).round().astype(np.uint16)[None, :].repeat(16, 0)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    images, unreadable = decode_files([tmp_path / "deep.png"], 16, channels=1)
    assert not unreadable
    expected = torch.from_numpy(np.rint(ramp / 257).astype(np.uint8))
    assert torch.equal(images[0, 0], expected)  # 0 to 255 along the row, as an 8-bit save of it would be
    rgb, _ = decode_files([tmp_path / "deep.png"], 16, channels=3)
    assert all(torch.equal(rgb[0, c], expected) for c in range(3))


def test_floating_point_grayscale_is_read_as_zero_to_one(tmp_path):
    values = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0, 0.25]], dtype=np.float32).repeat(6, 0)
    Image.fromarray(values).save(tmp_path / "float.tif")
    images, unreadable = decode_files([tmp_path / "float.tif"], 6, channels=1)
    assert not unreadable and images[0, 0, 0].tolist() == [0, 0, 128, 255, 255, 64]


@pytest.mark.parametrize("orientation, turn", [(1, 0), (3, 2), (6, -1), (8, 1)])
def test_a_photo_is_turned_upright_by_its_exif_orientation(tmp_path, orientation, turn):
    """The camera stores the sensor's pixels and a tag saying how to turn them; a viewer shows them turned."""
    array = np.zeros((8, 8), dtype=np.uint8)
    array[:4, :4] = 255  # white square top left, as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(tmp_path / "photo.png", exif=exif)
    images, unreadable = decode_files([tmp_path / "photo.png"], 8, channels=1)
    assert not unreadable
    assert torch.equal(images[0, 0], torch.from_numpy(np.rot90(array, turn).copy()))


def test_walk_follows_linked_folders_and_reads_a_loop_once(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deeper").mkdir(parents=True)
    for name in ["a.png", "deeper/b.png"]:
        (elsewhere / name).write_bytes(b"")
    root = tmp_path / "root"
    root.mkdir()
    (root / "c.png").write_bytes(b"")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "deeper" / "loop").symlink_to(elsewhere, target_is_directory=True)  # back up: a cycle
    (root / "gone").symlink_to(tmp_path / "nothing-here")  # a broken link is no image: another file
    images, others = walk_images(root)
    assert [p.relative_to(root).as_posix() for p in images] == ["c.png", "linked/a.png", "linked/deeper/b.png"]
    assert others == [root / "gone"]
    # ... unless its name says it was one: an image gone is listed (reading it fails, and says so), not left out
    (elsewhere / "deeper" / "d.png").symlink_to(tmp_path / "moved.png")
    images, _ = walk_images(root)
    assert "linked/deeper/d.png" in [p.relative_to(root).as_posix() for p in images]
    _, unreadable = decode_files([root / "linked/deeper/d.png"], 4, 1)
    assert list(unreadable) == [0]


def corrupt_exif_jpeg(path, colour=(200, 10, 10)):
    """A JPEG whose EXIF block claims more entries than it holds: Pillow reads the image and warns."""
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.new("RGB", (12, 10), colour).save(path, "JPEG", exif=exif.tobytes())
    data = bytearray(path.read_bytes())
    start = data.index(b"Exif\x00\x00") + 6  # the TIFF header, then the first directory's entry count at +8
    data[start + 8 : start + 10] = b"\x7f\xff"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("workers", [1, 2])
def test_pillows_warnings_are_said_once_naming_the_first_file(tmp_path, capsys, workers):
    paths = [corrupt_exif_jpeg(tmp_path / f"{i:03d}.jpg") for i in range(130)]  # enough for two worker threads
    Image.fromarray(gradient(12, 10)).convert("RGB").save(tmp_path / "plain.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images, unreadable = decode_files([tmp_path / "plain.png", *paths], 4, 3, workers=workers)
        warnings.warn("raised after decoding")  # other warnings pass as before
    assert not unreadable and (images[1:, 0] > images[1:, 1]).all()  # every one read: red
    assert [str(w.message) for w in caught] == ["raised after decoding"]
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning for 130 images, which were read all the same: UserWarning: Corrupt EXIF data")
    assert lines[0].endswith(f"(first: {paths[0]})")


def test_the_first_file_named_is_first_in_order_whichever_thread_finishes_first(tmp_path, capsys, monkeypatch):
    paths = [corrupt_exif_jpeg(tmp_path / f"{i:03d}.jpg") for i in range(130)]
    decode = images.decode

    def slow_first(path, size, channels):  # the first file's thread finishes after the others have warned
        if path == str(paths[0]):
            time.sleep(0.5)
        return decode(path, size, channels)

    monkeypatch.setattr(images, "decode", slow_first)
    decode_files(paths, 4, 3, workers=2)
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and lines[0].endswith(f"(first: {paths[0]})"), lines
