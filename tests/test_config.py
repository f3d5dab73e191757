from pathlib import Path

import pytest

from jitctl.config.settings import DEFAULT_PAGERDUTY_URL, load_config
from jitctl.errors import ConfigError, ExitCode


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_config_file(tmp_path):
    cfg = write(
        tmp_path / "etc" / "config.toml",
        'policy = "policies"\n[pagerduty]\nca_bundle = "ca.pem"\ntimeout = "3s"\n'
        '[audit]\npath = "logs/audit.jsonl"\n[store]\nbackend = "sqlite"\npath = "req.db"\n',
    )
    config = load_config({"JITCTL_CONFIG": str(cfg)})
    assert config.policy_path == tmp_path / "etc" / "policies"
    assert config.pagerduty.ca_bundle == tmp_path / "etc" / "ca.pem"
    assert config.pagerduty.timeout == 3.0
    assert config.pagerduty.url == DEFAULT_PAGERDUTY_URL
    assert config.audit_path == tmp_path / "etc" / "logs" / "audit.jsonl"
    assert config.store.path == tmp_path / "etc" / "req.db"


def test_environment_wins_over_the_file(tmp_path):
    cfg = write(
        tmp_path / "config.toml",
        'policy = "a"\n[pagerduty]\nurl = "https://pd.example.com"\n[audit]\npath = "x.jsonl"\n',
    )
    env = {
        "JITCTL_CONFIG": str(cfg),
        "JITCTL_POLICY": str(tmp_path / "b.toml"),
        "JITCTL_PAGERDUTY_URL": "https://127.0.0.1:8443/",
        "JITCTL_PAGERDUTY_CA_BUNDLE": str(tmp_path / "ca.pem"),
        "JITCTL_AUDIT_LOG": str(tmp_path / "y.jsonl"),
    }
    config = load_config(env)
    assert config.policy_path == tmp_path / "b.toml"
    assert config.pagerduty.url == "https://127.0.0.1:8443"
    assert config.pagerduty.ca_bundle == tmp_path / "ca.pem"
    assert config.audit_path == tmp_path / "y.jsonl"


def test_no_config_file_uses_defaults_in_platform_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    config = load_config({})
    assert config.path is None and config.policy_path is None
    assert config.audit_path == tmp_path / "data" / "jitctl" / "audit.jsonl"
    with pytest.raises(ConfigError) as info:
        config.require_policy_path()
    assert "JITCTL_POLICY" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('polcy = "p"\n', "did you mean 'policy'"),
        ('[pagerduty]\nulr = "https://x"\n', "did you mean 'url'"),
        ('[store]\nbackend = "redis"\n', "not one of sqlite, dynamodb"),
        ('[store]\nbackend = "dynamodb"\n', "needs table"),
        ('[pagerduty]\ntimeout = "soon"\n', "invalid duration"),
        ('[pagerduty]\nurl = "ftp://x"\n', "not an http(s) URL"),
        ("[audit\n", "not valid TOML"),
        ("pagerduty = 3\n", "must be a table"),
    ],
)
def test_bad_config_is_one_clear_usage_error(tmp_path, text, fragment):
    cfg = write(tmp_path / "config.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config({"JITCTL_CONFIG": str(cfg)})
    assert fragment in str(info.value)
    assert str(cfg) in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_explicit_config_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config({"JITCTL_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("JITCTL_PAGERDUTY_URL", "ftp://pd.example", "$JITCTL_PAGERDUTY_URL (for [pagerduty] url)"),
        ("JITCTL_BROKER_URL", "http://broker.example", "$JITCTL_BROKER_URL (for [broker] url)"),
    ],
)
def test_a_bad_value_from_the_environment_names_the_variable(tmp_path, variable, value, said):
    """Issue 21 item 7: the value came from the environment, not from config.toml; PagerDuty's
    URL error gives PagerDuty's example, not the webhook's."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[broker]\nserver_id = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config({"JITCTL_CONFIG": str(cfg), variable: value})
    assert str(info.value).startswith(said), str(info.value)
    assert "hooks.example.com" not in str(info.value)
    if variable == "JITCTL_PAGERDUTY_URL":
        assert "https://api.pagerduty.com" in str(info.value)


def test_a_broker_url_without_a_server_id_names_where_the_url_came_from(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config({"JITCTL_CONFIG_TOML": "", "JITCTL_BROKER_URL": "https://b.example"})
    assert "$JITCTL_BROKER_URL (for [broker] url) is set" in str(info.value)
    assert "JITCTL_BROKER_SERVER_ID" in str(info.value)


def test_jitctl_config_naming_a_directory_says_so(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config({"JITCTL_CONFIG": str(tmp_path)})
    assert "is a directory, not a file" in str(info.value) and "JITCTL_CONFIG" in str(info.value)
    assert "does not exist" not in str(info.value)
