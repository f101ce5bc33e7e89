import dataclasses

import pytest

from medseg_gui.core import config as cfg
def test_round_trip_preserves_every_field(tmp_path):
    c = cfg.RunConfig()
    c.training.variant = "b2"
    c.training.lr = 1.5e-4
    c.dataset.class_names = ["bg", "liver", "spleen", "kidney"]
    path = cfg.save(c, tmp_path / "run.toml")
    assert cfg.load(path) == c


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "sub" / "c.toml"
    cfg.save(cfg.RunConfig(), path)
    cfg.save(cfg.RunConfig(), path)
    assert [p.name for p in path.parent.iterdir()] == ["c.toml"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.toml"
    cfg.save(cfg.RunConfig(), path)
    before = path.read_text()

    def boom(config):
        raise OSError("disk full")

    monkeypatch.setattr(cfg, "to_toml", boom)
    with pytest.raises(OSError):
        cfg.save(cfg.RunConfig(), path)
    assert path.read_text() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_every_field_has_help_and_label():
    for section in cfg.SECTIONS:
        for f in cfg.field_specs(section):
            assert f.metadata["help"], f.name
            assert f.metadata["label"], f.name


def test_default_config_is_valid():
    assert cfg.validate(cfg.RunConfig()) == []


@pytest.mark.parametrize("dotted, value, fragment", [
    ("training.batch_size", 0, "below the minimum"),
    ("training.epochs", 20000, "above the maximum"),
    ("training.variant", "b9", "not one of"),
    ("training.precision", "fp8", "not one of"),
    ("training.compile", "sometimes", "not one of"),
    ("training.pretrained", "/no/such/weights.safetensors", "neither auto/hub/scratch"),
    ("training.output_dir", " ", "is empty"),
    ("dataset.image_size", 16, "below the minimum"),
    ("dataset.val_fraction", 0.9, "above the maximum"),
    ("dataset.path", "", "is empty"),
    ("dataset.class_names", ["a", "b"], "2 names for 4 classes"),
    ("dataset.class_colors", ["#000000", "#fff", "#ffffff", "#00ff00"], "is not #rrggbb"),
    ("dataset.class_colors", ["#000000"], "1 colours for 4 classes"),
])
def test_validation_names_field_and_reason(dotted, value, fragment):
    c = cfg.RunConfig()
    cfg.set_value(c, dotted, value)
    problems = cfg.validate(c)
    hits = [p for p in problems if p.field == dotted]
    assert hits, problems
    assert fragment in hits[0].reason


def test_validation_collects_all_problems_at_once():
    c = cfg.RunConfig()
    c.training.batch_size = 0
    c.training.lr = 5.0
    c.dataset.image_size = 4
    fields = {p.field for p in cfg.validate(c)}
    assert {"training.batch_size", "training.lr", "dataset.image_size"} <= fields


def test_existing_pretrained_path_is_accepted(tmp_path):
    c = cfg.RunConfig()
    (tmp_path / "w.safetensors").write_bytes(b"x")
    c.training.pretrained = str(tmp_path / "w.safetensors")
    assert cfg.validate(c) == []


def test_broken_toml_gives_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training\nbatch_size = 4\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert "bad.toml" in str(err.value) and "not valid TOML" in str(err.value)


def test_unknown_keys_and_sections_and_types_are_all_reported(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[training]\nbatch_sise = 4\nepochs = "ten"\nlr = 1\n[model]\nx = 1\n')
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    fields = {p.field for p in err.value.problems}
    assert fields == {"training.batch_sise", "training.epochs", "model"}
    assert "misspelled" in str(err.value)
    assert "must be a whole number" in str(err.value)


def test_int_is_accepted_for_float_but_bool_is_not_an_int(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nlr = 1\nbatch_size = true\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert [p.field for p in err.value.problems] == ["training.batch_size"]


def test_section_that_is_not_a_table(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('training = 3\n')
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load(path)
    assert err.value.problems[0].field == "training"


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(cfg.ConfigError, match="file not found"):
        cfg.load(tmp_path / "nope.toml")
    bad = tmp_path / "latin.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(cfg.ConfigError, match="latin.toml"):
        cfg.load(bad)


def test_load_and_validate_reports_range_errors_with_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nbatch_size = -3\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load_and_validate(path)
    assert "c.toml" in str(err.value) and "training.batch_size" in str(err.value)


def test_partial_file_fills_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[training]\nvariant = 'b0'\n")
    c = cfg.load(path)
    assert c.training.variant == "b0" and c.training.batch_size == cfg.TrainingConfig().batch_size


def test_diff_and_set_value():
    a, b = cfg.RunConfig(), cfg.RunConfig()
    cfg.set_value(b, "training.batch_size", 16)
    assert cfg.diff(a, b) == {"training.batch_size": (8, 16)}
    with pytest.raises(cfg.ConfigError, match="unknown setting"):
        cfg.set_value(b, "training.nope", 1)
    with pytest.raises(cfg.ConfigError, match="must be a whole number"):
        cfg.set_value(b, "training.batch_size", "16")


def test_set_num_classes_keeps_names_and_colours_consistent():
    c = cfg.RunConfig()
    cfg.set_num_classes(c, 6)
    assert len(c.dataset.class_names) == len(c.dataset.class_colors) == 6
    assert cfg.validate(c) == []
    assert dataclasses.asdict(c)["dataset"]["num_classes"] == 6
