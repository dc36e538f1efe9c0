"""cluster.yaml, checked offline with Ray's own validator, and the repository's security defaults.

Nothing here talks to a cloud: the cluster config goes through the very functions ``ray up`` runs
before it calls AWS (``prepare_config`` then ``validate_config``, against Ray's
``ray-schema.json``), plus checks of what the schema cannot see: loopback-only dashboard and
MLflow, no world-open ingress, no secrets, a GPU worker type with autoscaling bounds.

The source scans fail naming ``file:line``: every ``torch.load`` passes ``weights_only=True``,
YAML is read with ``yaml.safe_load`` only, and ``ray.init`` keeps the dashboard off or on
127.0.0.1.
"""

from __future__ import annotations

import ast
import copy
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

CLUSTER_YAML = REPO / "cluster.yaml"
SOURCE_DIRS = ("platform", "methods", "benchmarks")
LOOPBACK = "127.0.0.1"
WORLD_CIDRS = ("0.0.0.0/0", "::/0")
RESULTS = "/shared/binarena-results"


# --------------------------------------------------------------------------------------------
# cluster.yaml
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw_text() -> str:
    return CLUSTER_YAML.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def config(raw_text: str) -> dict[str, Any]:
    loaded = yaml.safe_load(raw_text)
    assert isinstance(loaded, dict), "cluster.yaml must hold a mapping"
    return loaded


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in the parsed config (keys and values), with where it sits."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            yield where, str(key)
            yield from _strings(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _commands(config: dict[str, Any], *sections: str) -> list[str]:
    sections = sections or ("initialization_commands", "setup_commands", "head_setup_commands",
                            "worker_setup_commands", "head_start_ray_commands",
                            "worker_start_ray_commands")
    found = [cmd for s in sections for cmd in config.get(s) or []]
    for node_type in config.get("available_node_types", {}).values():
        for s in sections:
            if s in ("initialization_commands", "worker_setup_commands"):
                found += node_type.get(s) or []
    return found


def _argv(command: str) -> list[str]:
    # The commands are shell lines; split them into words, shell separators on their own.
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    return list(lexer)


def _option(argv: list[str], *names: str) -> list[str]:
    """The values of ``--name VALUE`` / ``--name=VALUE`` in ``argv`` (all occurrences)."""
    values = []
    for i, word in enumerate(argv):
        for name in names:
            if word == name and i + 1 < len(argv):
                values.append(argv[i + 1])
            elif word.startswith(name + "="):
                values.append(word.split("=", 1)[1])
    return values


def test_ray_up_validator_accepts_cluster_yaml(config):
    """What ``ray up`` does before touching the cloud: fill defaults, then schema-validate."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(config))  # our keys alone, no defaults merged in
    validate_config(prepare_config(copy.deepcopy(config)))  # as `ray up` resolves it


def test_validator_is_strict_about_field_names(config):
    """A misspelt field fails the same validator, so passing it means the names are Ray's."""
    jsonschema = pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import validate_config

    bad = copy.deepcopy(config)
    worker = next(k for k in bad["available_node_types"] if k != bad["head_node_type"])
    bad["available_node_types"][worker]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)
    bad = copy.deepcopy(config)
    bad["head_start_commands"] = bad.pop("head_start_ray_commands")
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)


def test_head_and_gpu_worker_with_autoscaling_bounds(config):
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    assert types[head]["resources"].get("GPU", 0) == 0, "the head node is the CPU node"
    workers = {name: t for name, t in types.items() if name != head}
    gpu_workers = {name: t for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1}
    assert gpu_workers, "no worker type declares GPU resources"
    for name, t in gpu_workers.items():
        assert isinstance(t.get("min_workers"), int), f"{name}: min_workers missing"
        assert isinstance(t.get("max_workers"), int), f"{name}: max_workers missing"
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"], name
        assert t["max_workers"] >= 1, f"{name} can never start"
        assert t["resources"].get("CPU", 0) >= 1, f"{name}: jobs need CPUs next to the GPU"


def test_setup_installs_this_project_with_pinned_torch(config):
    setup = " ; ".join(_commands(config, "setup_commands"))
    assert re.search(r"\btorch==\d+\.\d+", setup), "torch is not pinned in setup_commands"
    assert re.search(r"\btorchvision==\d+\.\d+", setup), "torchvision is not pinned"
    assert re.search(r"\bray\[default\]==\d+\.\d+", setup), "Ray on the nodes is not pinned"
    mounted = {remote for remote, local in config.get("file_mounts", {}).items() if local == "."}
    assert mounted, "the repository is not synced to the nodes (file_mounts REMOTE: .)"
    assert any(f"pip install -e {remote}" in setup for remote in mounted), \
        "setup_commands do not pip-install the synced repository"


def test_shared_results_and_data_are_prepared_on_every_node(config):
    setup = " ; ".join(_commands(config, "setup_commands"))  # common: head and workers
    assert re.search(r"mount\b.*\s/shared\b", setup) and "mountpoint -q /shared" in setup, \
        "the shared file system is not mounted (and checked) at /shared"
    assert RESULTS in setup, f"{RESULTS} is not created on the shared mount"
    assert re.search(r"aws s3 sync\s.*\s/data\b", setup), "datasets are not synced into /data"


def test_dashboard_listens_on_loopback_only(config):
    starts = [_argv(c) for c in _commands(config, "head_start_ray_commands")]
    heads = [argv for argv in starts if "start" in argv and "--head" in argv]
    assert heads, "head_start_ray_commands do not start a Ray head"
    for argv in heads:
        hosts = _option(argv, "--dashboard-host")
        assert hosts == [LOOPBACK], f"ray start --head binds the dashboard to {hosts or 'default'}"
    for argv in map(_argv, _commands(config)):
        hosts = _option(argv, "--dashboard-host")
        assert all(h == LOOPBACK for h in hosts), f"a command binds the dashboard to {hosts}"


def _mlflow_servers(command: str) -> list[list[str]]:
    """The arguments of each ``mlflow server`` in a shell line, also inside a quoted word (a
    systemd ``ExecStart=...`` written by printf, ``bash -c '...'``)."""
    found = []
    argv = _argv(command)
    for i, word in enumerate(argv):
        if (word == "mlflow" or word.endswith("/mlflow")) and argv[i + 1:i + 2] == ["server"]:
            args = []
            for arg in argv[i + 2:]:
                if arg and set(arg) <= set(";&|()<>"):
                    break
                args.append(arg)
            found.append(args)
        elif (inner := re.search(r"\S*mlflow\s+server\b.*", word, re.DOTALL)) is not None:
            found += _mlflow_servers(inner.group(0))
    return found


def test_mlflow_server_on_head_binds_loopback_only(config):
    head_cmds = _commands(config, "head_setup_commands", "head_start_ray_commands")
    servers = [args for c in head_cmds for args in _mlflow_servers(c)]
    assert servers, "no `mlflow server` is started on the head node"
    for args in servers:
        assert _option(args, "--host", "-h") == [LOOPBACK], \
            f"mlflow server must bind {LOOPBACK} only (explicitly): mlflow server {' '.join(args)}"
    worker_cmds = _commands(config, "setup_commands", "worker_setup_commands",
                            "worker_start_ray_commands")
    assert not any(re.search(r"mlflow\s+server", c) for c in worker_cmds), \
        "the MLflow server belongs on the head node only"


def test_no_world_open_ingress(config):
    for where, text in _strings(config):
        for cidr in WORLD_CIDRS:
            assert cidr not in text, f"{where} opens {cidr}"
        assert not re.search(r"(^|[\s=:'\"])0\.0\.0\.0($|[\s:'\"/])", text), \
            f"{where} binds/opens 0.0.0.0: {text!r}"
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    for rule in rules:
        assert not rule.get("IpRanges") and not rule.get("Ipv6Ranges"), \
            f"ingress rule by address range ({rule}); only intra-cluster (UserIdGroupPairs) rules"
    # Without SecurityGroupIds, `ray up` creates a default group that opens SSH to 0.0.0.0/0.
    for name, node_type in config["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), \
            f"{name}: no SecurityGroupIds, so Ray would create its world-open SSH default group"


SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA|AIDA|AROA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[0-9])(?=[A-Za-z0-9/+]*[a-z])"
                                 r"(?=[A-Za-z0-9/+]*[A-Z])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    "secret key field": re.compile(r"(aws_)?secret_access_key|session_token|client_secret", re.IGNORECASE),
    "password": re.compile(r"passw(or)?d", re.IGNORECASE),
    "token=": re.compile(r"token\s*[=:]", re.IGNORECASE),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|PRIVATE KEY-----"),
    "credentials in a URL": re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
}


def test_no_secret_in_cluster_yaml(raw_text, config):
    for lineno, line in enumerate(raw_text.splitlines(), 1):
        for what, pattern in SECRET_PATTERNS.items():
            assert not pattern.search(line), f"cluster.yaml:{lineno}: looks like a {what}: {line!r}"
    assert "ssh_private_key" not in config.get("auth", {}), \
        "let Ray create the key pair (kept in ~/.ssh), name no key file here"


def test_secret_patterns_catch_the_usual_leaks():
    leaks = ["aws_access_key_id: AKIAABCDEFGHIJKLMNOP", "password: hunter2",
             "url: http://x/?token=abc", "-----BEGIN RSA PRIVATE KEY-----",
             "key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
             "uri: postgresql://user:pw@db/mlflow"]
    for leak in leaks:
        assert any(p.search(leak) for p in SECRET_PATTERNS.values()), leak


def test_cluster_commands_are_valid_shell(config):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    for cmd in _commands(config):
        done = subprocess.run([bash, "-n", "-c", cmd], capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{cmd!r}: {done.stderr.strip()}"


# --------------------------------------------------------------------------------------------
# security defaults in the sources
# --------------------------------------------------------------------------------------------

def _sources() -> list[Path]:
    files = sorted(p for d in SOURCE_DIRS for p in (REPO / d).rglob("*.py"))
    assert files, f"no Python sources found under {SOURCE_DIRS}"
    return files


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _aliases(tree: ast.Module, module: str) -> tuple[set[str], dict[str, str]]:
    """Names bound to ``module`` itself, and names imported from it (local name -> attribute)."""
    modules: set[str] = set()
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == module:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module == module:
            for alias in node.names:
                names[alias.asname or alias.name] = alias.name
    return modules, names


def _called(node: ast.Call, modules: set[str], names: dict[str, str]) -> str | None:
    """The ``module`` attribute a call invokes (``yaml.load(...)``, ``load(...)`` from yaml)."""
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
            and func.value.id in modules:
        return func.attr
    if isinstance(func, ast.Name) and func.id in names:
        return names[func.id]
    return None


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def torch_load_violations(path: Path, tree: ast.Module) -> list[str]:
    modules, names = _aliases(tree, "torch")
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node, modules, names) == "load":
            kw = {k.arg: k.value for k in node.keywords}
            if not _is_true(kw.get("weights_only")):
                bad.append(f"{_where(path, node)}: torch.load without weights_only=True")
    return bad


UNSAFE_YAML = {"load", "load_all", "full_load", "full_load_all", "unsafe_load", "unsafe_load_all"}
UNSAFE_LOADERS = {"Loader", "FullLoader", "UnsafeLoader", "UnsafeConstructor", "FullConstructor"}


def yaml_violations(path: Path, tree: ast.Module) -> list[str]:
    modules, names = _aliases(tree, "yaml")
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node, modules, names) in UNSAFE_YAML:
            bad.append(f"{_where(path, node)}: yaml.{_called(node, modules, names)} "
                       "(read YAML with yaml.safe_load)")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules and node.attr in UNSAFE_LOADERS:
            bad.append(f"{_where(path, node)}: yaml.{node.attr} (read YAML with yaml.safe_load)")
        elif isinstance(node, ast.Name) and names.get(node.id) in UNSAFE_LOADERS:
            bad.append(f"{_where(path, node)}: {node.id} from yaml (read YAML with yaml.safe_load)")
    return bad


DASHBOARD_KEYS = ("include_dashboard", "dashboard_host")


def _dashboard_safe(kwargs: dict[str, ast.AST]) -> bool:
    include = kwargs.get("include_dashboard")
    host = kwargs.get("dashboard_host")
    if isinstance(include, ast.Constant) and include.value is False:
        return True
    return isinstance(host, ast.Constant) and host.value == LOOPBACK


def _dict_keywords(value: ast.AST) -> dict[str, ast.AST] | None:
    """The literal keys of ``dict(k=v, ...)`` or ``{"k": v, ...}``; None when not literal."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) \
            and value.func.id == "dict" and not value.args:
        if any(k.arg is None for k in value.keywords):
            return None
        return {k.arg: k.value for k in value.keywords}
    if isinstance(value, ast.Dict):
        if not all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in value.keys):
            return None
        return {k.value: v for k, v in zip(value.keys, value.values)}
    return None


def _resolve_kwargs(name: str, scope: ast.AST) -> dict[str, ast.AST] | None:
    """The dashboard-relevant keys a ``**name`` carries, if its definition in ``scope`` is literal
    and nothing later changes those keys; None when that cannot be told."""
    resolved = None
    for node in ast.walk(scope):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id == name:
                if resolved is not None:
                    return None  # assigned twice: do not guess
                resolved = _dict_keywords(value)
                if resolved is None:
                    return None
            if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
                    and target.value.id == name:
                key = target.slice
                if not (isinstance(key, ast.Constant) and key.value not in DASHBOARD_KEYS):
                    return None  # a dashboard key (or an unknown one) set later
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == name \
                and node.func.attr in ("update", "setdefault", "__setitem__", "pop"):
            return None
    return resolved


def ray_init_violations(path: Path, tree: ast.Module) -> tuple[list[str], int]:
    modules, names = _aliases(tree, "ray")
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    bad, calls = [], 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _called(node, modules, names) == "init"):
            continue
        calls += 1
        kwargs = {k.arg: k.value for k in node.keywords if k.arg is not None}
        for star in (k.value for k in node.keywords if k.arg is None):
            scope = next((f for f in functions if f.lineno <= node.lineno <= f.end_lineno), tree)
            extra = _resolve_kwargs(star.id, scope) if isinstance(star, ast.Name) else None
            if extra is None:
                kwargs = {}  # cannot tell what **kwargs carries: not provably safe
                break
            kwargs = {**extra, **kwargs}
        if not _dashboard_safe(kwargs):
            bad.append(f"{_where(path, node)}: ray.init without include_dashboard=False or "
                       f'dashboard_host="{LOOPBACK}"')
    return bad, calls


def test_torch_load_passes_weights_only_true():
    bad = [v for p in _sources() for v in torch_load_violations(p, _parse(p))]
    assert not bad, "\n".join(bad)


def test_yaml_is_read_with_safe_load_only():
    bad = [v for p in _sources() for v in yaml_violations(p, _parse(p))]
    assert not bad, "\n".join(bad)


def test_runtime_ray_init_keeps_the_dashboard_off_or_on_loopback():
    path = REPO / "platform" / "connect.py"
    bad, calls = ray_init_violations(path, _parse(path))
    assert calls, "platform/connect.py calls ray.init nowhere: where does it connect?"
    assert not bad, "\n".join(bad)


def test_every_ray_init_keeps_the_dashboard_off_or_on_loopback():
    bad = [v for p in _sources() for v in ray_init_violations(p, _parse(p))[0]]
    assert not bad, "\n".join(bad)


BAD_SOURCE = '''
import torch, yaml, ray
from torch import load as tload
from yaml import load, FullLoader
torch.load(f)
torch.load(f, weights_only=False)
tload(f)
torch.load(f, weights_only=True)
yaml.load(s, Loader=yaml.Loader)
yaml.unsafe_load(s)
yaml.full_load(s)
load(s, Loader=FullLoader)
yaml.safe_load(s)
ray.init(address="auto")
ray.init(dashboard_host="0.0.0.0")
ray.init(include_dashboard=False)
ray.init(dashboard_host="127.0.0.1")
def f(address):
    kw = dict(include_dashboard=False)
    ray.init(address=address, **kw)
def g(address):
    kw = dict(include_dashboard=False)
    kw["include_dashboard"] = True
    ray.init(address=address, **kw)
'''


def test_scanners_catch_unsafe_calls():
    """The scans above would fail on what they forbid (and pass what they allow)."""
    path = REPO / "platform" / "example.py"
    tree = ast.parse(BAD_SOURCE)

    def lines(found: list[str]) -> list[int]:
        return sorted(int(v.split(":")[1]) for v in found)

    assert lines(torch_load_violations(path, tree)) == [5, 6, 7]
    yaml_lines = lines(yaml_violations(path, tree))
    assert {9, 10, 11, 12} <= set(yaml_lines) and 13 not in yaml_lines
    bad, calls = ray_init_violations(path, tree)
    assert calls == 6
    assert lines(bad) == [14, 15, 24]
