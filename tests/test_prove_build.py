"""The build cache's copy of the tree, without running configure or ninja."""

from __future__ import annotations

import bz2
import os
from pathlib import Path

import pytest

from analyzer.errors import InputError
from analyzer.prove.build import _knows, _stand_in_blobs, _sync, build_qemu, given_binary


def _tree(root: Path) -> Path:
    (root / "hw").mkdir(parents=True)
    (root / "hw" / "a.c").write_text("int a;\n")
    (root / "b.h").write_text("int b;\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    (root / "build").mkdir()  # a user's in-tree build directory
    (root / "build" / "build.ninja").write_text("")
    return root


def test_sync_copies_the_tree_but_git_and_build_directories(tmp_path: Path) -> None:
    tree, copy = _tree(tmp_path / "tree"), tmp_path / "copy"
    assert _sync(tree, copy, tmp_path / "manifest.json") is True
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == ["b.h", "hw/a.c"]
    assert _sync(tree, copy, tmp_path / "manifest.json") is False  # nothing changed


def test_sync_recopies_changed_files_and_removes_deleted_ones(tmp_path: Path) -> None:
    tree, copy, manifest = _tree(tmp_path / "tree"), tmp_path / "copy", tmp_path / "manifest.json"
    _sync(tree, copy, manifest)
    (tree / "hw" / "a.c").write_text("int a2;\n")
    (tree / "b.h").unlink()
    assert _sync(tree, copy, manifest) is True
    assert (copy / "hw" / "a.c").read_text() == "int a2;\n"
    assert not (copy / "b.h").exists()


def test_a_file_a_patch_touched_is_restored_with_a_fresh_mtime(tmp_path: Path) -> None:
    """ninja must see the restored file as newer than the objects built from the patched one."""
    tree, copy, manifest = _tree(tmp_path / "tree"), tmp_path / "copy", tmp_path / "manifest.json"
    os.utime(tree / "hw" / "a.c", (1_000_000, 1_000_000))
    _sync(tree, copy, manifest)
    (copy / "hw" / "a.c").write_text("int patched;\n")
    text = manifest.read_text().replace('"hw/a.c": [7, 1000000000000000]', '"hw/a.c": null')
    manifest.write_text(text)  # what _apply records for a file it patches
    assert _sync(tree, copy, manifest) is False  # the tree itself did not change
    assert (copy / "hw" / "a.c").read_text() == "int a;\n"
    assert (copy / "hw" / "a.c").stat().st_mtime > 1_000_000


def test_stand_ins_for_the_edk2_blobs_a_dfsg_tree_lacks(tmp_path: Path) -> None:
    (tmp_path / "pc-bios").mkdir()
    (tmp_path / "pc-bios" / "meson.build").write_text("fds = [\n  'edk2-x86_64-code.fd',\n  'edk2-arm-vars.fd',\n]\n")
    (tmp_path / "pc-bios" / "edk2-arm-vars.fd.bz2").write_bytes(b"real")
    _stand_in_blobs(tmp_path)
    assert bz2.decompress((tmp_path / "pc-bios" / "edk2-x86_64-code.fd.bz2").read_bytes()) == b""
    assert (tmp_path / "pc-bios" / "edk2-arm-vars.fd.bz2").read_bytes() == b"real"  # kept


def test_configure_options_are_passed_only_where_configure_knows_them() -> None:
    # The shape of QEMU 10.0's configure --help: flags, then meson features by name.
    help_text = (
        "  --disable-install-blobs  install provided firmware blobs\n  kvm             KVM acceleration support\n"
    )
    assert _knows(help_text, "--disable-install-blobs")
    assert _knows(help_text, "--enable-kvm")
    assert not _knows(help_text, "--disable-tcg")
    assert not _knows(help_text, "--target-list=x86_64-softmmu")


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a QEMU source tree that can be built"):
        build_qemu(tmp_path, tmp_path / "cache")
    with pytest.raises(InputError, match="not an executable file"):
        given_binary(tmp_path / "qemu-system-x86_64", tmp_path)
