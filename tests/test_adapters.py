"""The adapter registry: built-in frameworks load by name, and a missing one is an error, never a skip."""

import sys

import numpy as np
import pytest

from conformance.adapters import BUILTIN, OPS, FrameworkUnavailable, load_framework


@pytest.mark.parametrize("name", ["torch", "tensorflow", "jax"])
def test_a_framework_that_is_not_installed_is_an_error_with_the_install_hint(monkeypatch, name):
    monkeypatch.setitem(sys.modules, {"tensorflow": "keras"}.get(name, name), None)  # import now fails
    with pytest.raises(FrameworkUnavailable, match=rf"framework '{name}' is not installed.*pip install 'bce-conformance\[{name}\]'"):
        load_framework(name)


def test_an_unknown_framework_is_an_error():
    with pytest.raises(FrameworkUnavailable, match="unknown framework 'mxnet'.*numpy, torch, tensorflow, jax"):
        load_framework("mxnet")


def test_numpy_apis_name_their_formulas_and_cover_every_op():
    framework = load_framework("numpy")
    assert framework.name == "numpy" and framework.versions == {"numpy": np.__version__}
    assert sorted(api.op for api in framework.apis) == sorted(OPS)
    assert all(api.name.startswith("numpy.") and api.framework == "numpy" for api in framework.apis)
    assert set(BUILTIN) == {"numpy", "torch", "tensorflow", "jax", "rounded"}


def test_numpy_reproducer_runs_the_same_formula():
    framework = load_framework("numpy")
    stable = next(api for api in framework.apis if api.op == "bce_with_logits")
    line = stable.repro({"input": "['0x1.4p+4']", "target": "['0x0.0p+0']"}, "float32", "none")
    printed = []
    exec(line.replace("print(", "printed.append("), {"printed": printed})
    got = stable.call({"logits": np.array([20.0], np.float32), "target": np.array([0.0], np.float32)}, "none")
    assert printed == [got.tolist()]


# ---------------------------------------------------------------------------------------------
# docs/adapters.md documents every field of Framework and Api, and no other

def _documented_fields(heading: str) -> list[str]:
    """The first column of the first table after ``heading`` in docs/adapters.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "adapters.md").read_text(encoding="utf-8")
    after = text[text.index(heading) + len(heading):]
    rows = re.search(r"\n(\|[^\n]*\|\n\|[-| :]+\|\n(?:\|[^\n]*\|\n)+)", after).group(1).splitlines()[2:]
    return [re.fullmatch(r"`(\w+)`", row.split("|")[1].strip()).group(1) for row in rows]


@pytest.mark.parametrize("heading, cls", [("### `Framework`", "Framework"), ("### `Api`", "Api")])
def test_the_docs_table_every_field_of_the_dataclass(heading, cls):
    import dataclasses

    from conformance import adapters

    fields = [f.name for f in dataclasses.fields(getattr(adapters, cls))]
    documented = _documented_fields(heading)
    assert sorted(documented) == sorted(fields), f"docs/adapters.md's {cls} table: {sorted(set(documented) ^ set(fields))}"
