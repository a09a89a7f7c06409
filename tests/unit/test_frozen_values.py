"""Frozen API values share their set of given fields, and still behave as their own.

A report holds about 30 frozen values per workload; each pydantic instance carries the set
of the fields it was given. Values given the same fields share one set
(``FrozenApiModel.model_post_init``): nothing a caller can do to one value may show in another.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from unthrottle.model.stats import ContainerResources, RssBytes


def test_values_given_the_same_fields_share_one_set() -> None:
    a = ContainerResources(name="app", cpu_limit=500)
    b = ContainerResources(name="web", cpu_limit=1000)
    assert a.model_fields_set == b.model_fields_set == {"name", "cpu_limit"}
    assert a.__pydantic_fields_set__ is b.__pydantic_fields_set__


def test_values_given_other_fields_keep_their_own() -> None:
    a = ContainerResources(name="app", cpu_limit=500)
    c = ContainerResources.model_validate({"name": "app", "memoryLimit": "1Gi"})
    assert c.model_fields_set == {"name", "memory_limit"}
    assert a.model_fields_set == {"name", "cpu_limit"}


def test_a_copy_with_changes_does_not_touch_the_shared_set() -> None:
    a = ContainerResources(name="app", cpu_limit=500)
    b = ContainerResources(name="web", cpu_limit=1000)
    changed = a.model_copy(update={"memory_limit": 2**30})
    assert changed.model_fields_set == {"name", "cpu_limit", "memory_limit"}
    assert a.model_fields_set == b.model_fields_set == {"name", "cpu_limit"}
    assert changed.model_dump(exclude_unset=True) == {
        "name": "app",
        "cpu_limit": 500,
        "memory_limit": 2**30,
    }
    assert b.model_dump(exclude_unset=True) == {"name": "web", "cpu_limit": 1000}


def test_values_stay_frozen_and_validated() -> None:
    a = RssBytes(p99=1, max=2)
    with pytest.raises(ValidationError):
        a.max = 3  # type: ignore[misc]
    assert a.model_fields_set == {"p99", "max"}
    with pytest.raises(ValidationError):
        RssBytes(p99=-1, max=2)
