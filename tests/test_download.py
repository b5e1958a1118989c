import hashlib
import socket
import threading

import pytest

from selfsup import download as dl
from selfsup.download import DownloadError, download_fashion_mnist, fetch_file
from tests.conftest import fashion_mnist_source, modules_loaded


def make_mirror(folder, files: dict[str, bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def md5(content: bytes) -> str:
    return hashlib.md5(content).hexdigest()


def test_local_folder_mirror_copies_and_verifies(tmp_path):
    mirror = make_mirror(tmp_path / "m", {"a.gz": b"hello"})
    path = fetch_file("a.gz", md5(b"hello"), [str(mirror)], tmp_path / "out")
    assert path.read_bytes() == b"hello"


def test_file_url_mirror_downloads(tmp_path):
    mirror = make_mirror(tmp_path / "m", {"a.gz": b"hello"})
    path = fetch_file("a.gz", md5(b"hello"), [mirror.as_uri()], tmp_path / "out")
    assert path.read_bytes() == b"hello"


def test_md5_mismatch_leaves_no_file_and_tries_next_mirror(tmp_path):
    bad = make_mirror(tmp_path / "bad", {"a.gz": b"corrupt"})
    good = make_mirror(tmp_path / "good", {"a.gz": b"hello"})
    out = tmp_path / "out"
    path = fetch_file("a.gz", md5(b"hello"), [str(bad), str(good)], out)
    assert path.read_bytes() == b"hello"
    assert sorted(p.name for p in out.iterdir()) == ["a.gz"]  # no temporary left behind


def test_no_working_mirror_is_one_clear_line_and_no_partial_file(tmp_path):
    bad = make_mirror(tmp_path / "bad", {"a.gz": b"corrupt"})
    empty = make_mirror(tmp_path / "empty", {})
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as err:
        fetch_file("a.gz", md5(b"hello"), [str(bad), str(empty), "http://127.0.0.1:9/"], out, timeout=2)
    message = str(err.value)
    assert "\n" not in message
    assert f"could not fetch a.gz from any mirror ({bad}: md5" in message
    assert str(empty) in message and "127.0.0.1:9" in message
    assert "set FASHION_MNIST_MIRROR" in message
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("reply", [b"not http at all\r\n\r\n",  # http.client.BadStatusLine
                                   b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhel"])  # a body cut short
def test_a_url_mirror_that_answers_badly_is_skipped_for_the_next(tmp_path, reply):
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def answer_once():
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)

    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/"
    good = make_mirror(tmp_path / "good", {"a.gz": b"hello"})
    out = tmp_path / "out"
    with server:
        path = fetch_file("a.gz", md5(b"hello"), [url, str(good)], out, timeout=5)
        thread.join(10)
    assert path.read_bytes() == b"hello" and sorted(p.name for p in out.iterdir()) == ["a.gz"]


def test_extra_mirror_is_tried_before_official_ones():
    assert dl.mirror_list("/my/mirror") == ["/my/mirror", *dl.OFFICIAL_MIRRORS]
    assert dl.mirror_list(None) == list(dl.OFFICIAL_MIRRORS)


def test_official_files_are_torchvisions():
    from torchvision.datasets import FashionMNIST

    assert list(dl.FASHION_MNIST_FILES.items()) == list(FashionMNIST.resources)
    assert len(dl.FASHION_MNIST_FILES) == 4
    assert list(dl.OFFICIAL_MIRRORS) == list(FashionMNIST.mirrors)
    assert list(dl.CLASSES) == list(FashionMNIST.classes)


def test_the_data_stages_start_without_torchvision():
    """download and preprocess know the release from selfsup.download alone: importing torchvision (and the
    compiler it imports) would add about 2 s to each."""
    loaded = {m.split(".")[0] for m in modules_loaded("import stages.download, stages.preprocess")}
    assert "torch" in loaded and "torchvision" not in loaded


def test_real_files_have_the_release_md5(fmnist_raw):
    for name, expected in dl.FASHION_MNIST_FILES.items():
        assert dl.md5sum(fmnist_raw / name) == expected


def test_files_already_present_are_kept(fmnist_raw, tmp_path):
    # With the right md5 already in place, no mirror is needed at all.
    paths = download_fashion_mnist(fmnist_raw, extra_mirror=str(tmp_path / "nowhere"))
    assert [p.name for p in paths] == list(dl.FASHION_MNIST_FILES)


def test_download_stage_fails_with_one_line_when_no_mirror_works(tmp_path, monkeypatch, capsys):
    from selfsup.cli import run_stage
    from stages.download import main

    monkeypatch.setattr(dl, "OFFICIAL_MIRRORS", ("http://127.0.0.1:9/",))
    with pytest.raises(SystemExit) as exit_info:
        run_stage(main, ["--out", str(tmp_path / "raw"), "--mirror", str(tmp_path / "empty")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: could not fetch train-images-idx3-ubyte.gz")
    assert list((tmp_path / "raw").iterdir()) == []


def test_without_the_data_a_test_that_needs_it_skips_with_the_reason_and_the_fix():
    with pytest.raises(pytest.skip.Exception, match=r"needs Fashion-MNIST: FASHION_MNIST_MIRROR is not set and no "
                                                    r"official mirror answers; set FASHION_MNIST_MIRROR"):
        fashion_mnist_source({}, reachable=lambda: False)
    assert fashion_mnist_source({"FASHION_MNIST_MIRROR": "/data/fmnist"}, reachable=lambda: False) == "/data/fmnist"
    assert fashion_mnist_source({}, reachable=lambda: True) is None  # the official mirrors, over the internet
