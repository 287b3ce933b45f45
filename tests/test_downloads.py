"""`robustdml data cub200 | cars196 | sop` and ImageNet weights: the real download, checksum and extraction
code paths, served from localhost (never the internet)."""

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from robustdml.cli import main
from robustdml.data import build_dataset, fetch, sources
from robustdml.data.download import Checksum, DownloadError, extract
from robustdml.data.entries import DATASETS
from robustdml.data.sources import DatasetDownload, RemoteFile
from test_data_images import SIZE, make_cars, make_cub, make_sop, save_image


def _tgz(source: Path, archive: Path, top: str) -> Path:
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(source, arcname=top)
    return archive


def _set_download(monkeypatch, name: str, download: DatasetDownload) -> None:
    """Point dataset ``name``'s registry entry at ``download`` for the test."""
    import dataclasses

    monkeypatch.setitem(DATASETS._entries, name, dataclasses.replace(DATASETS.get(name), download=download))


def _md5(path: Path) -> Checksum:
    return Checksum("md5", hashlib.md5(path.read_bytes()).hexdigest())


def _serve_cub(tmp_path, folder, url, monkeypatch, checksum=True) -> Path:
    archive = _tgz(make_cub(tmp_path / "src" / "CUB_200_2011"), folder / "CUB_200_2011.tgz", "CUB_200_2011")
    remote = RemoteFile((url + "CUB_200_2011.tgz",), "CUB_200_2011.tgz", _md5(archive) if checksum else None,
                        top="CUB_200_2011")
    _set_download(monkeypatch, "cub200", DatasetDownload("CUB_200_2011", (remote,)))
    return archive


def test_cub200_is_downloaded_checked_and_extracted(tmp_path, monkeypatch, file_server):
    folder, url, requested = file_server
    _serve_cub(tmp_path, folder, url, monkeypatch)
    monkeypatch.chdir(tmp_path)
    messages = []
    assert fetch("cub200", report=messages.append)
    assert requested == ["/CUB_200_2011.tgz"] and "ready in" in messages[-1]
    assert (tmp_path / "data" / "CUB_200_2011.tgz").is_file()
    assert not [p for p in (tmp_path / "data").iterdir() if p.name.startswith(".")], "staging folders left behind"
    # The default place of `robustdml data cub200` is where training looks without --data-root.
    assert len(build_dataset("cub200", "test", image_size=SIZE)) == 4
    requested.clear()
    assert fetch("cub200", report=messages.append) and requested == [] and "found in" in messages[-1]


def test_an_archive_with_the_wrong_checksum_is_neither_kept_nor_extracted(tmp_path, monkeypatch, file_server):
    folder, url, _ = file_server
    archive = _serve_cub(tmp_path, folder, url, monkeypatch)
    archive.write_bytes(archive.read_bytes() + b"tampered")
    with pytest.raises(DownloadError, match="MD5 .* expected"):
        fetch("cub200", root=str(tmp_path / "data" / "CUB_200_2011"), report=lambda _: None)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_offline_archive_download_says_where_to_put_the_file_and_extracts_it_from_there(
        tmp_path, monkeypatch, capsys, file_server, offline_url):
    folder, url, _ = file_server
    archive = _serve_cub(tmp_path, folder, url, monkeypatch)
    remote = DATASETS.get("cub200").download.files[0]
    offline = RemoteFile((offline_url + "CUB_200_2011.tgz",), remote.filename, remote.checksum, top=remote.top)
    _set_download(monkeypatch, "cub200", DatasetDownload("CUB_200_2011", (offline,)))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "cub200"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: cub200: could not download CUB_200_2011.tgz")
    assert f"put it at {Path('data') / 'CUB_200_2011.tgz'}" in err
    # Put there by hand, it is checked and extracted without any network.
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "CUB_200_2011.tgz").write_bytes(archive.read_bytes())
    assert main(["data", "cub200"]) == 0
    assert "ready in" in capsys.readouterr().out


def test_cars196_gets_its_images_and_its_annotations(tmp_path, monkeypatch, file_server):
    folder, url, _ = file_server
    source = make_cars(tmp_path / "src")
    archive = _tgz(source / "car_ims", folder / "car_ims.tgz", "car_ims")
    annotations = folder / "cars_annos.mat"
    annotations.write_bytes((source / "cars_annos.mat").read_bytes())
    _set_download(monkeypatch, "cars196", DatasetDownload("cars196", (
        RemoteFile((url + "car_ims.tgz",), "car_ims.tgz", _md5(archive), top="car_ims", into="car_ims"),
        RemoteFile((url + "cars_annos.mat",), "cars_annos.mat", _md5(annotations)))))
    root = tmp_path / "data" / "cars196"
    assert fetch("cars196", root=str(root), report=lambda _: None)
    assert len(build_dataset("cars196", "train", root=str(root), image_size=SIZE)) == 6


def _sop_zip(tmp_path, folder) -> Path:
    source = make_sop(tmp_path / "src" / "Stanford_Online_Products")
    archive = folder / "Stanford_Online_Products.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(source.rglob("*")):
            bundle.write(path, path.relative_to(source.parent))
    return archive


def test_sop_without_a_known_checksum_is_checked_by_its_zip_crcs_and_layout(tmp_path, monkeypatch, file_server):
    folder, url, _ = file_server
    archive = _sop_zip(tmp_path, folder)
    _set_download(monkeypatch, "sop", DatasetDownload("Stanford_Online_Products", (
        RemoteFile((url + archive.name,), archive.name, None, top="Stanford_Online_Products"),)))
    assert fetch("sop", root=str(tmp_path / "ok" / "Stanford_Online_Products"), report=lambda _: None)
    assert len(build_dataset("sop", "test", root=str(tmp_path / "ok" / "Stanford_Online_Products"),
                             image_size=SIZE)) == 5
    with zipfile.ZipFile(archive) as bundle:
        member = bundle.getinfo("Stanford_Online_Products/Ebay_train.txt")
    data = bytearray(archive.read_bytes())
    name_length, extra_length = int.from_bytes(data[member.header_offset + 26: member.header_offset + 28], "little"), \
        int.from_bytes(data[member.header_offset + 28: member.header_offset + 30], "little")
    data[member.header_offset + 30 + name_length + extra_length + 5] ^= 0xFF  # the member's CRC no longer matches
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError):
        fetch("sop", root=str(tmp_path / "bad" / "Stanford_Online_Products"), report=lambda _: None)
    assert not (tmp_path / "bad" / "Stanford_Online_Products").exists()


def test_extraction_refuses_members_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as bundle:
        info = tarfile.TarInfo("top/../../escaped.txt")
        info.size = 3
        bundle.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(DownloadError, match="outside"):
        extract(archive, "top", tmp_path / "out" / "top")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "out" / "top").exists()


# ImageNet weights: fetched into the hub cache the way torchvision's weights API does (hash prefix in the name).

@pytest.fixture
def weights_at(tmp_path, monkeypatch):
    """Serve a resnet18 state dict at a file:// URL named like torchvision's (``resnet18-<sha256 prefix>.pth``)."""
    import torchvision

    from robustdml.models import resnet

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    reference = torchvision.models.resnet18(weights=None)
    staged = tmp_path / "staged.pth"
    torch.save(reference.state_dict(), staged)
    prefix = hashlib.sha256(staged.read_bytes()).hexdigest()[:8]
    served = tmp_path / "served-weights" / f"resnet18-{prefix}.pth"
    served.parent.mkdir()
    os.replace(staged, served)

    def use(url):
        monkeypatch.setattr(resnet, "imagenet_weights_url", lambda arch: url)
        return resnet.imagenet_weights_path("resnet18")

    return reference, served, use


def test_missing_imagenet_weights_are_downloaded_with_the_hash_check(weights_at):
    from robustdml.models import build_model

    reference, served, use = weights_at
    cached = use(served.as_uri())
    model = build_model("resnet18", (3, 64, 64))
    assert cached.is_file() and torch.equal(model.backbone.net.conv1.weight, reference.conv1.weight)


def test_imagenet_weights_with_the_wrong_hash_are_refused(weights_at):
    from robustdml.models import build_model

    _, served, use = weights_at
    wrong = served.with_name("resnet18-00000000.pth")
    os.replace(served, wrong)
    cached = use(wrong.as_uri())
    with pytest.raises(DownloadError, match="hash"):
        build_model("resnet18", (3, 64, 64))
    assert not cached.exists()


def test_offline_imagenet_weights_fail_in_one_line_saying_where_to_put_them(weights_at, offline_url, capsys,
                                                                            tmp_path):
    _, served, use = weights_at
    cached = use(offline_url + served.name)
    for c in range(4):
        for k in range(2):
            save_image(tmp_path / "images" / f"class{c}" / f"{k}.png", c)
    code = main(["train", "--dataset", "image-folder", "--data-root", str(tmp_path / "images"), "--model", "resnet18",
                 "--image-size", "32", "--device", "cpu", "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("error: ImageNet weights for resnet18")
    assert str(cached) in err and "--pretrained none" in err and "Offline?" in err
    assert not (tmp_path / "run").exists(), "nothing may be written before the model is built"
