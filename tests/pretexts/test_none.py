from selfsup.pretexts import get_pretext
from selfsup.pretexts.none import NoneParams


def test_none_has_no_head_no_params_and_does_not_train():
    spec = get_pretext("none")
    assert spec.params is NoneParams and not spec.trains and spec.make_batch is None
    assert NoneParams() == NoneParams()
