"""A settings file (a preset or `--config run.yaml`): one YAML mapping, read with every key once."""

from __future__ import annotations

from pathlib import Path

from .errors import SettingsError


def _yaml_loader():
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not silently the last."""
    import yaml

    def unique_keys(loader, node):
        keys = [k for k, _ in node.value if isinstance(k.value, str)]  # scalar keys
        twice = next((k for n, k in enumerate(keys) if k.value in [j.value for j in keys[:n]]), None)
        if twice is not None:
            raise yaml.MarkedYAMLError(
                problem=f"{twice.value!r} is given twice; keep one", problem_mark=twice.start_mark
            )
        return loader.construct_mapping(node)

    loader = type("UniqueKeyLoader", (yaml.SafeLoader,), {})
    loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, unique_keys)
    return loader


def read_settings_file(path: str | Path, origin: str) -> dict:
    """A YAML mapping of settings; a missing, unreadable or malformed file is one SettingsError."""
    import yaml

    path = Path(path).expanduser()
    if path.is_dir():
        raise SettingsError(f"{origin}: {path} is a directory, not a settings file; give the path of a YAML file")
    if not path.is_file():
        raise SettingsError(f"{origin}: no such file {path}")
    try:
        loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader())
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{origin}: cannot read {path} ({type(e).__name__}: {e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SettingsError(f"{origin}: {path} is not valid YAML{where} ({problem}); fix the file") from None
    if loaded is None:
        raise SettingsError(f"{origin}: {path} is empty (no settings); write settings in it (key: value) or drop it")
    if not isinstance(loaded, dict):
        raise SettingsError(f"{origin}: {path} must be a mapping of settings (key: value), got {type(loaded).__name__}")
    return loaded
