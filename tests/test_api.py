"""The public API: what a researcher imports exists, is documented, and the layers stay apart."""

import ast
import importlib
import inspect
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = (
    "genjax",
    "genjax.data",
    "genjax.distributions",
    "genjax.estimators",
    "genjax.experiment",
    "genjax.keys",
    "genjax.metrics",
    "genjax.models",
    "genjax.nn",
    "genjax.samplers",
    "genjax.sharding",
    "genjax.train",
    "genjax.types",
)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_exists_and_is_documented(package):
    module = importlib.import_module(package)
    assert module.__doc__, package
    assert hasattr(module, "__all__"), f"{package} has no __all__"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj)) and not inspect.getdoc(obj):
            undocumented.append(name)
    assert not undocumented, f"{package}: no docstring on {undocumented}"


def test_the_documented_imports_work():
    import genjax
    from genjax.models import diffusion, gan, vae  # noqa: F401
    from genjax.samplers import sample  # noqa: F401
    from genjax.train import build_train_step  # noqa: F401

    assert genjax.samplers.get_sampler("ddim", eta=0.5).eta == 0.5
    with pytest.raises(AttributeError, match="no attribute 'sampler'"):
        genjax.sampler  # noqa: B018


def test_models_do_not_import_the_engine_or_the_experiment_layer():
    for path in sorted((ROOT / "genjax" / "models").glob("*.py")):
        bad = sorted(n for n in _imports(path) if n.startswith(("genjax.train", "genjax.experiment", "genjax.cli")))
        assert not bad, f"{path.name} imports {bad}"


def test_scripts_use_the_library_not_the_command_line_module():
    for folder in ("experiments", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            bad = sorted(n for n in _imports(path) if n == "genjax.cli" or n.startswith("genjax.cli.") or n == "genjax.tasks")
            assert not bad and "genjax.cli" not in path.read_text(), f"{path.relative_to(ROOT)} imports {bad or 'genjax.cli'}"


def test_the_command_line_module_only_parses_and_calls_the_experiment_layer():
    imported = {n for n in _imports(ROOT / "genjax" / "cli.py") if n.startswith("genjax")}
    # genjax.distributed connects the processes, which must happen before the experiment layer touches a device.
    assert imported <= {"genjax", "genjax.experiment", "genjax.experiment.ConfigError", "genjax.data", "genjax.data.fetch_mnist", "genjax.distributed"}, (
        imported
    )


def test_every_public_module_is_in_the_api_reference():
    documented = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        documented |= {line.split()[1] for line in page.read_text().splitlines() if line.startswith("::: ")}
    missing = []
    for path in sorted((ROOT / "genjax").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") for p in parts):
            continue
        names = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}  # the module or a package above it
        if not names & documented:
            missing.append(".".join(parts))
    assert not missing, f"not in docs/api/*.md: {missing}"
