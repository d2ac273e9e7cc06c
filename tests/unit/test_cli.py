"""The command line's shape and its contract for errors (no servers involved)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli import run_cli
from tests.support.deployments import REPO

COMMANDS = (
    "run", "topology", "status", "drain", "undrain", "pause", "resume", "rebalance", "lab",
    "drill", "bench",
)  # fmt: skip


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


def test_help_summaries_match_the_commands() -> None:
    """`--help` shows app.COMMANDS' summaries without importing the commands; each must
    say what its command's own docstring says."""
    import click

    from redis_forwarder.cli.app import COMMANDS as LAZY

    assert sorted(LAZY) == sorted(COMMANDS)
    for name, lazy in LAZY.items():
        command = lazy.load()
        summary = click.Command(name, help=lazy.summary).get_short_help_str(1000)
        assert command.get_short_help_str(1000) == summary, f"{name}: summary out of date"


def test_drill_needs_exactly_one_lab(tmp_path: Path) -> None:
    result = run_cli("drill", "kill-node")
    assert result.code == 2 and "exactly one of --dir" in result.stderr
    result = run_cli("drill", "no-such-scenario", "--dir", str(tmp_path))
    assert result.code == 2 and "kill-node" in result.stderr  # the choices are listed
    assert "Traceback" not in result.stderr


def test_fleet_commands_name_a_missing_config(tmp_path: Path) -> None:
    result = run_cli("drain", "n1", "--config", str(tmp_path / "missing.toml"))
    assert result.code == 2 and "no such file" in result.stderr


def test_bad_spec_exits_2_naming_the_key(tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('name = "x"\nkind = "standalone"\ncolour = 1\n')
    result = run_cli("lab", "up", str(spec), "--dir", str(tmp_path / "lab"))
    assert result.code == 2
    assert "colour (line 3): unknown key" in result.stderr
    assert "shard: required key is missing" in result.stderr


def test_status_without_a_lab_exits_3(tmp_path: Path) -> None:
    result = run_cli("lab", "status", "--dir", str(tmp_path / "none"))
    assert result.code == 3
    assert "no lab is up" in result.stderr


def test_missing_spec_file(tmp_path: Path) -> None:
    result = run_cli("lab", "up", str(tmp_path / "nope.toml"), "--dir", str(tmp_path / "lab"))
    assert result.code == 2 and "no such file" in result.stderr


def test_default_lab_dir_comes_from_the_environment(tmp_path: Path) -> None:
    result = run_cli("lab", "status", REDIS_FORWARDER_LAB_DIR=str(tmp_path / "envlab"))
    assert result.code == 3 and str(tmp_path / "envlab") in result.stderr


def test_topology_needs_exactly_one_deployment() -> None:
    result = run_cli("topology")
    assert result.code == 2 and "name the deployment once" in result.stderr
    both = run_cli("topology", "--cluster", "127.0.0.1:7200", "--standalone", "127.0.0.1:7000")
    assert both.code == 2 and "--cluster, --standalone" in both.stderr
    masterless = run_cli("topology", "--sentinel", "127.0.0.1:26400")
    assert masterless.code == 2 and "--master NAME" in masterless.stderr
    bad = run_cli("topology", "--cluster", "127.0.0.1:port")
    assert bad.code == 2 and "--cluster" in bad.stderr and "not a number" in bad.stderr


def test_topology_password_env_must_exist() -> None:
    result = run_cli(
        "topology", "--standalone", "127.0.0.1:7000", "--password-env", "NO_SUCH_VAR_X"
    )
    assert result.code == 2 and "NO_SUCH_VAR_X, which is not set" in result.stderr


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    config = tmp_path / "forwarder.toml"
    config.write_text('[source]\nkind = "sentinel"\naddresses = ["127.0.0.1:26400"]\ncolor = 1\n')
    result = run_cli("topology", "--config", str(config))
    assert result.code == 2
    assert "source.color (line 4): unknown key" in result.stderr
    config.write_text('[source]\nkind = "sentinel"\naddresses = ["127.0.0.1:26400"]\n')
    result = run_cli("topology", "--config", str(config))
    assert (
        result.code == 2 and "source (line 1): a sentinel deployment needs masters" in result.stderr
    )


def test_a_missing_extra_is_named_before_the_drill_starts(tmp_path: Path) -> None:
    """Without the `lab` extra, `drill --report` says which extra to install (exit 3,
    one line), before any lab or drill work; not an ImportError after the drills."""
    hide_matplotlib = (
        "import sys; sys.modules['matplotlib'] = None; "  # find_spec then reports it missing
        "from redis_forwarder.cli.main import main; "
        f"sys.argv = ['redis-forwarder', 'drill', 'kill-node', '--dir', {str(tmp_path)!r}, "
        f"'--report', {str(tmp_path / 'report')!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide_matplotlib], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3, done.stderr
    assert "pip install 'redis-forwarder[lab]'" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_every_metric_is_documented() -> None:
    """docs/deploy.md's table lists every metric a node serves, with its help text."""
    from redis_forwarder.observe import Metrics

    text = (REPO / "docs" / "deploy.md").read_text()
    families = Metrics().registry.collect()  # names without _total, as declared
    missing = [family.name for family in families if f"`{family.name}" not in text]
    assert not missing, f"add these to docs/deploy.md's Metrics table: {missing}"


def test_a_lab_dir_that_cannot_be_made_exits_3_naming_it(tmp_path: Path) -> None:
    """A --dir under a file or under /proc: one line naming the directory, exit 3."""
    spec = str(REPO / "topology" / "standalone.toml")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("the user's\n")
    for directory in (a_file / "lab", Path("/proc/no-such-process/lab")):
        result = run_cli("lab", "up", spec, "--dir", str(directory))
        assert result.code == 3, result.stderr
        assert f"cannot make the lab directory {directory}" in result.stderr
        assert "--dir" in result.stderr and "Traceback" not in result.stderr


def test_a_lab_dir_that_is_a_file_is_named_not_removed(tmp_path: Path) -> None:
    """$REDIS_FORWARDER_LAB_DIR naming the user's file: say it is a file, exit 3, and
    never tell the user to remove it."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("the user's\n")
    for command in ("status", "down"):
        result = run_cli("lab", command, REDIS_FORWARDER_LAB_DIR=str(a_file))
        assert result.code == 3, result.stderr
        assert f"the lab directory {a_file} is a file" in result.stderr
        assert "remove" not in result.stderr
    assert a_file.read_text() == "the user's\n"


def test_a_coordinated_node_id_must_be_a_znode_name(tmp_path: Path) -> None:
    """Refused before any connection (the ZooKeeper address here answers nothing)."""
    config = tmp_path / "node.toml"
    config.write_text(
        '[source]\nkind = "standalone"\naddresses = ["127.0.0.1:1"]\n\n'
        '[[route]]\nname = "r"\nfrom = { channels = ["a"] }\nto = { channel = "b" }\n\n'
        '[coordination]\nzookeeper = "127.0.0.1:1"\n'
    )
    for node_id in ("..", "a/b"):
        result = run_cli("run", "--config", str(config), "--node-id", node_id, timeout=30)
        assert result.code == 2, result.stderr
        assert f"--node-id {node_id!r} cannot name a node in ZooKeeper" in result.stderr
    config.write_text(config.read_text() + '\n[node]\nid = "."\n')
    result = run_cli("run", "--config", str(config), timeout=30)
    assert result.code == 2 and "[node] id '.' cannot name a node" in result.stderr


def test_ctrl_c_while_the_command_line_loads_exits_130() -> None:
    """Ctrl-C in a command's first moments lands while Python imports click and the
    rest: still one line and exit 130. (A finder stands in for the keypress, raising
    KeyboardInterrupt where the import of click would be: the timing is exact.)"""
    script = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'click':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['redis-forwarder', '--help']\n"
        "from redis_forwarder.cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "redis-forwarder: interrupted\n"


def test_form_cluster_refuses_a_spec_that_is_not_a_cluster_at_once() -> None:
    """Exit 2 naming the spec's kind, without waiting for nodes that will never form."""
    spec = REPO / "topology" / "sentinel.toml"
    result = run_cli("lab", "form-cluster", str(spec), "--timeout", "60", timeout=20)
    assert result.code == 2, result.stderr
    assert f"{spec} is a sentinel spec; form-cluster forms a cluster" in result.stderr
