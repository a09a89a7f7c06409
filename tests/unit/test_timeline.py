"""The demo's compressed time: which pod ran which configuration over a window."""

from __future__ import annotations

from pathlib import Path

from unthrottle.sandbox.timeline import DemoWorkload, settled_ms, write_window
from unthrottle.sim.scenarios import all_scenarios, deployment_manifest

HOUR_MS = 3_600_000
STEP_MS = 30_000


def test_a_patched_configuration_gets_more_than_min_coverage_of_the_window() -> None:
    assert settled_ms(6 * HOUR_MS, STEP_MS) == 216 * 60_000  # 3.6h of 6h: above 0.5
    assert settled_ms(2 * HOUR_MS, STEP_MS) % STEP_MS == 0


def test_the_window_holds_old_pods_then_new_pods_of_the_applied_resources(
    tmp_path: Path,
) -> None:
    seed, other = all_scenarios()[:2]
    seed = seed.with_changes(replicas=1, pods=(("app-5d8f6c7b9", "app-5d8f6c7b9-x2k4q"),))
    patched = DemoWorkload(seed)
    manifest = deployment_manifest(seed)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["cpu"] = "2"
    patched.roll_out(manifest, [("app-7c9d4f8b6", "app-7c9d4f8b6-m8n2p")])
    assert patched.patched and patched.configurations[-1].cpu_limit_m == 2000
    still = DemoWorkload(other.with_changes(replicas=1))
    end = 1_767_225_600_000
    files = write_window(
        tmp_path, [patched, still], end_ms=end, window_ms=2 * HOUR_MS, step_ms=STEP_MS
    )
    assert [f.name for f in files] == ["unpatched.om", "patched.om"]
    text = files[1].read_text()
    assert 'pod="app-5d8f6c7b9-x2k4q"' in text and 'pod="app-7c9d4f8b6-m8n2p"' in text
    assert other.deployment not in text
    assert files[0].read_text().count(f'namespace="{other.namespace}"') > 0
