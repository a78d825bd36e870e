"""training.py: the precision choice says what it chose and why."""

import pytest
import torch

from bertkit import training


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_only_where_it_is_native(monkeypatch, native):
    monkeypatch.setattr(training, "bf16_supported", lambda device: native)
    cpu = torch.device("cpu")
    use, why = training.choose_precision("auto", cpu)
    assert use == native
    assert ("AVX-512 BF16" in why) if native else ("no native bf16" in why and why.startswith("fp32"))
    assert training.choose_precision("fp32", cpu) == (False, "fp32 (asked for)")
    use, why = training.choose_precision("bf16", cpu)
    assert use and (("emulated" in why) != native)
