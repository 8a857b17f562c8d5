"""The decision-quality simulator runs end to end on a tiny operator, so it cannot rot. The
figures of docs/decision-quality.md come from the full run; here only their shape is checked,
plus the one ordering a correct simulator cannot miss: the oracle beats random offers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _simulator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "nextbest_simulate", ROOT / "scripts" / "simulate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_simulator_runs_all_four_policies(tmp_path: Path) -> None:
    simulate = _simulator()
    results = simulate.simulate(customers=300, days=2, per_day=40, seed=3, workdir=tmp_path)
    assert list(results) == ["random", "warehouse", "learning", "oracle"]
    for result in results.values():
        assert result.contacts == 80
        assert 0 < result.model_pitched <= 80
        assert 0 <= result.model_accepted <= result.model_pitched
    summary = simulate.summary(results)
    assert set(summary["rates"]) == {"random", "warehouse", "learning", "oracle"}
    assert summary["rates"]["oracle"] > summary["rates"]["random"]
    assert set(summary["lift_over_random"]) == {"warehouse", "learning", "oracle"}
    control = summary["learning_control"]
    assert control["pitched"] > 0  # the learning run keeps a random control group
    assert control["lift_report"] is not None  # measured by the real lift report
    # every policy ran on its own database, through the real services
    assert {p.name for p in tmp_path.glob("*.db")} == {
        "random.db",
        "warehouse.db",
        "learning.db",
        "oracle.db",
    }


def test_the_catalogs_of_the_policies(tmp_path: Path) -> None:
    simulate = _simulator()
    base = simulate.DEMO_CATALOG.read_text(encoding="utf-8")
    from nextbest.catalog import parse_catalog

    random_catalog = parse_catalog(simulate.catalog_for("random", base, 50.0).encode())
    assert (random_catalog.experiment.control_share, random_catalog.learning.enabled) == (
        1.0,
        False,
    )
    learning = parse_catalog(simulate.catalog_for("learning", base, 20.0).encode())
    assert learning.learning.enabled and learning.learning.prior_strength == 20.0
    assert learning.experiment.control_share == simulate.CONTROL_SHARE
    oracle = parse_catalog(simulate.catalog_for("oracle", base, 50.0).encode())
    assert oracle.ranking.channel_fit == (1.0, 1.0, 1.0)
    assert oracle.ranking.min_probability == 0.0
    assert oracle.policy.for_channel("store").max_offers == 30
    for catalog in (random_catalog, learning, oracle):
        assert catalog.ranking.value_exponent == 0.0  # every policy ranks by acceptance
