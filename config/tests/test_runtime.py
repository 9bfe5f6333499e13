"""The web process's garbage collector settings (config/runtime.py)."""

from __future__ import annotations

import gc

import pytest
from django.conf import settings as django_settings

from config.runtime import tune_gc


@pytest.fixture
def gc_restored():
    threshold = gc.get_threshold()
    yield
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_startup_freezes_what_it_built_and_raises_the_first_threshold(settings, gc_restored):
    settings.KNOWLEDGE_EXCHANGE = {
        **django_settings.KNOWLEDGE_EXCHANGE,
        "gc_freeze": True,
        "gc_gen0_threshold": 12_345,
    }
    gc.unfreeze()
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_threshold() == (12_345, gen1, gen2)
    assert gc.get_freeze_count() > 0


def test_both_can_be_switched_off(settings, gc_restored):
    settings.KNOWLEDGE_EXCHANGE = {
        **django_settings.KNOWLEDGE_EXCHANGE,
        "gc_freeze": False,
        "gc_gen0_threshold": 0,
    }
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
