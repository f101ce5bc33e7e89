"""The configuration of the last session: saved when it changes, restored at the next start.

Edits on the Configuration page must never vanish because the app was closed. The file lives in the
app's data folder (``MEDSEG_HOME``), is written atomically (``core.config.save``), and a file that
cannot be read is left where it is and reported, never overwritten silently.
"""

from __future__ import annotations

from pathlib import Path

from medseg_gui.core import config as cfg
from medseg_gui.core.paths import last_config_file


def save_last(config: cfg.RunConfig, path: Path | None = None) -> Path:
    return cfg.save(config, path or last_config_file())


def load_last(path: Path | None = None) -> tuple[cfg.RunConfig | None, str]:
    """(the last configuration or None, a message for the user: '' when there was nothing to restore).

    A configuration with out-of-range values still loads (the form shows each problem in place); an
    unreadable file is moved aside to ``last_config.toml.unreadable`` so the next save cannot erase it.
    """
    path = path or last_config_file()
    if not path.is_file():
        return None, ""
    try:
        return cfg.load(path), f"Restored the configuration from your last session ({path})."
    except cfg.ConfigError as exc:
        aside = path.with_name(path.name + ".unreadable")
        try:
            path.replace(aside)
        except OSError:
            aside = path
        first = exc.problems[0] if exc.problems else ""
        return None, f"The last session's configuration could not be read ({first}); kept as {aside}."
