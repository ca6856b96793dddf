import yaml

from tunewright.core.workspace import CONFIG_NAMES, LAYOUT, init_workspace


def test_init_creates_layout_and_commented_configs(tmp_path):
    written = init_workspace(tmp_path / "ws")
    for sub in LAYOUT:
        assert (tmp_path / "ws" / sub).is_dir()
    assert len(written) == len(CONFIG_NAMES)
    for name in CONFIG_NAMES:
        text = (tmp_path / "ws" / "configs" / name).read_text()
        assert text.startswith("# tunewright ")
        assert isinstance(yaml.safe_load(text), dict)


def test_init_keeps_edited_configs_unless_forced(tmp_path):
    init_workspace(tmp_path)
    cfg = tmp_path / "configs" / "curate.yaml"
    cfg.write_text("# edited\n")
    assert init_workspace(tmp_path) == []
    assert cfg.read_text() == "# edited\n"
    init_workspace(tmp_path, force=True)
    assert cfg.read_text() != "# edited\n"
