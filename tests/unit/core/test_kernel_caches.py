"""oneDNN's kernel caches are bounded to one training step's shapes, unless the user set them."""

from tunewright.core.kernel_caches import VARIABLES, bound_kernel_caches, step_capacity


def test_the_bound_is_set_where_the_environment_has_none(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert bound_kernel_caches(192) == dict.fromkeys(VARIABLES, "192")


def test_a_value_the_user_exported_is_kept(monkeypatch):
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "4096")
    monkeypatch.delenv("LRU_CACHE_CAPACITY", raising=False)
    assert bound_kernel_caches(128) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "4096", "LRU_CACHE_CAPACITY": "128"}


def test_the_capacity_holds_every_sequence_of_a_micro_batch():
    assert step_capacity(8) == 192
    assert step_capacity(16) > step_capacity(8) > step_capacity(1) == step_capacity(0) == 80
