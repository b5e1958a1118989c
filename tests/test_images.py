"""The one decode path for image files: any mode and size in, the model's channels and size out."""

import numpy as np
import pytest
import torch
from PIL import Image

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


def test_unreadable_files_are_reported_by_position_and_left_black(tmp_path):
    Image.fromarray(gradient(10, 10)).save(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    images, unreadable = decode_files([tmp_path / "bad.jpg", tmp_path / "good.png", tmp_path / "gone.png"], 4, 3)
    assert set(unreadable) == {0, 2} and "cannot identify image file" in unreadable[0]
    assert str(tmp_path) not in unreadable[0]  # the caller names the file once
    assert "No such file" in unreadable[2]
    assert images[0].sum() == 0 and images[1].sum() > 0


def test_workers_give_the_same_tensor_as_one_process(tmp_path):
    paths = []
    for i in range(130):  # enough for two worker processes
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
