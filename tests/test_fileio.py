"""The strict readers and the output guards of uniav.fileio."""

from __future__ import annotations

import logging
import os

import pytest

from uniav.cli import main
from uniav.errors import ConfigError, InputError
from uniav.fileio import (atomic_path, atomic_write_text, read_json_object,
                          refuse_output_over_input, remove_stale_temporaries, stale_temporaries)


def test_stale_temporaries_match_only_the_atomic_write_pattern(tmp_path):
    with pytest.raises(RuntimeError):  # a real leftover: what atomic_path makes, kept by a kill
        with atomic_path(tmp_path / "iter_0000001.pt") as tmp:
            tmp.write_bytes(b"x" * 10)
            kept = tmp.with_name(tmp.name + ".copy")
            os.link(tmp, kept)
            raise RuntimeError
    leftover = kept.rename(kept.with_name(kept.name[:-len(".copy")]))
    ours = [tmp_path / ".latest.json.ab_12xyz.tmp", tmp_path / ".best.safetensors.0a1b2c3d.tmp",
            leftover]
    others = [tmp_path / "notes.tmp", tmp_path / ".x.short.tmp", tmp_path / ".x.ABCDEFGH.tmp",
              tmp_path / "iter_0000001.pt", tmp_path / ".x.abcdefgh.tmp.bak"]
    for path in ours[:2] + others:
        path.write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".deep.json.abcdefgh.tmp").write_text("x")  # not recursive
    assert stale_temporaries(tmp_path) == sorted(ours)
    assert stale_temporaries(tmp_path, ["latest.json"]) == [ours[0]]
    assert remove_stale_temporaries(tmp_path) == sorted(ours)
    assert all(path.exists() for path in others) and not any(p.exists() for p in ours)
    assert (tmp_path / "sub" / ".deep.json.abcdefgh.tmp").exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_remove_stale_temporaries_logs_what_it_removed(tmp_path, caplog):
    (tmp_path / ".iter_0000004.pt.k2j4h5g6.tmp").write_bytes(b"\0" * 1000)
    with caplog.at_level(logging.INFO, logger="uniav.fileio"):
        remove_stale_temporaries(tmp_path)
    assert ".iter_0000004.pt.k2j4h5g6.tmp (1000 bytes)" in caplog.text


def test_refuse_output_over_input_follows_links(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(source)
    relative = tmp_path / "sub" / ".." / "in.json"
    (tmp_path / "sub").mkdir()
    for output in (source, link, relative):
        with pytest.raises(InputError, match="--output is the same file as --in") as excinfo:
            refuse_output_over_input({"--output": output}, {"--in": source})
        assert excinfo.value.field == "--output"
    refuse_output_over_input({"--output": tmp_path / "new.json"}, {"--in": source, "x": None})
    refuse_output_over_input({"--output": None}, {"--in": source})


def test_atomic_write_refuses_a_directory_and_an_unwritable_place(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        atomic_write_text(tmp_path, "x")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write the output here") as excinfo:
        atomic_write_text(blocker / "out.json", "x")
    assert excinfo.value.file == str(blocker / "out.json")


def test_read_json_object_survives_absurd_nesting(tmp_path):
    path = tmp_path / "marker.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    assert read_json_object(path) is None


def test_override_with_a_duplicate_key_is_refused(capsys):
    status = main(["check-config", "params.yaml", "--set", "train={epochs: 1, epochs: 2}"])
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    assert "override 'train={epochs: 1, epochs: 2}'" in stderr
    assert "duplicate key 'epochs'" in stderr


def test_yaml_override_parse_error_names_the_override():
    from uniav.config.loading import parse_override

    with pytest.raises(ConfigError, match=r"override 'a=\[1': the value: not valid YAML"):
        parse_override("a=[1")


def test_schema_output_is_written_atomically(tmp_path, capsys):
    out = tmp_path / "schema.json"
    assert main(["schema", "--output", str(out)]) == 0
    assert out.read_text().startswith("{") and not list(tmp_path.glob(".*.tmp"))
    status = main(["schema", "--output", str(tmp_path)])
    assert status == 2 and "is a directory" in capsys.readouterr().err


def test_config_or_input_that_is_a_directory(tmp_path, capsys):
    assert main(["check-config", str(tmp_path)]) == 2
    stderr = capsys.readouterr().err
    assert f"{tmp_path}: cannot read the file" in stderr and "Traceback" not in stderr
    status = main(["score", "--ground-truth", str(tmp_path), "--predictions", str(tmp_path),
                   "--subset", "x", "--tiou", "0.5", "--output", str(tmp_path / "out.json")])
    stderr = capsys.readouterr().err
    assert status == 2 and f"file {tmp_path}: cannot read the file" in stderr
