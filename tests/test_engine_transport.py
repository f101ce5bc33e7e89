"""The child-process transport without Qt: the command the GUI starts and the parser of its lines."""

from medseg_gui.core import events as ev
from medseg_gui.core.engine.transport import child_command, parse_child_line


def test_child_command_and_line_parsing(tmp_path):
    cmd = child_command(tmp_path / "c.toml")
    assert cmd[1:5] == ["-m", "medseg_gui.cli", "train", "--config"] and "--events-json" in cmd
    assert "--stop-on-stdin" in cmd
    resumed = child_command(tmp_path / "c.toml", resume_from="/runs/r1")
    assert "--resume" in resumed and "--config" not in resumed  # the CLI takes one or the other
    assert parse_child_line("   \n") is None
    assert isinstance(parse_child_line('{"type":"LogMessage","level":"warning","message":"m"}'), ev.LogMessage)
    stray = parse_child_line("Epoch 1: 100%|####|")
    assert isinstance(stray, ev.LogMessage) and stray.level == "info"


def test_child_command_matches_the_cli():
    """The flags the GUI passes exist in `medseg train` (parsed, not run)."""
    from medseg_gui.cli import build_parser

    parser = build_parser()
    for cmd in (child_command("c.toml"), child_command("c.toml", resume_from="r", run_dir="d")):
        args = parser.parse_args(cmd[3:])
        assert args.events_json and args.stop_on_stdin


def test_frozen_app_starts_the_bundled_cli(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "medseg-gui"))
    cmd = child_command(tmp_path / "c.toml")
    assert cmd[0] == str(tmp_path / ("medseg.exe" if sys.platform == "win32" else "medseg")) and cmd[1] == "train"
