import shutil

import pytest

from facediag.core.download import ChecksumError, DownloadError, download_verified, sha256_file
from facediag.data.london import LondonFaces, download_london, remote_path

FILES = ["london_info.csv", "neutral/001_03.jpg", "smiling/001_08.jpg", "landmarks/001_03.tem"]


def serve(www, london_dir, files):
    for local in files:
        target = www / remote_path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(london_dir / local, target)


def test_london_downloader_fetches_pinned_files_over_http_and_checks_them(http_server, london_dir, tmp_path):
    www, url = http_server
    serve(www, london_dir, FILES)
    dest = download_london(tmp_path / "dest", base_url=url, files=FILES)
    for local in FILES:
        assert sha256_file(dest / local) == sha256_file(london_dir / local)
    assert remote_path("smiling/001_08.jpg") == "inst/smiling_front/001_08.jpg"


def test_london_downloader_rejects_a_corrupted_file_and_keeps_nothing_of_it(http_server, london_dir, tmp_path):
    www, url = http_server
    serve(www, london_dir, FILES)
    corrupted = www / remote_path("neutral/001_03.jpg")
    corrupted.write_bytes(corrupted.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DownloadError, match="001_03.jpg.*does not match"):
        download_london(tmp_path / "dest", base_url=url, files=FILES)
    assert not (tmp_path / "dest" / "neutral" / "001_03.jpg").exists()
    assert not list((tmp_path / "dest" / "neutral").glob("*.part"))
    assert (tmp_path / "dest" / "smiling" / "001_08.jpg").exists()


def test_offline_download_fails_fast_and_says_where_to_put_the_folder(tmp_path):
    source = LondonFaces(tmp_path / "london-faces", base_url="http://127.0.0.1:9/")
    with pytest.raises(DownloadError, match=r"Offline\? Copy the folder 'london-faces'"):
        source.records()


def test_missing_folder_without_download_names_the_place(tmp_path):
    with pytest.raises(FileNotFoundError, match="london-faces"):
        LondonFaces(tmp_path / "london-faces", download=False).records()


def test_a_file_already_present_is_re_verified_not_trusted(tmp_path):
    dest = tmp_path / "weights.bin"
    dest.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="weights.bin"):
        download_verified("http://127.0.0.1:9/weights.bin", dest, "0" * 64)


def test_http_error_lists_every_url_tried(http_server, tmp_path):
    _, url = http_server
    with pytest.raises(DownloadError, match=r"(?s)missing\.bin.*404.*mirror"):
        download_verified([url + "missing.bin", url + "mirror/missing.bin"], tmp_path / "missing.bin", None)
