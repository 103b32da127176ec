"""Files written with an earlier release's models still decode.

When a model is retrained and shipped under the same name (``mean-scale-0.013``,
``int-student-0.013``), the old weights move to ``model/checkpoints/previous/``. A file names
its model by id + weights hash, so without ``--model`` the decoder must find the old weights
there; encoding, the demo and ``licfpga eval`` never pick them.
"""

import numpy as np
import pytest

from licfpga.host.backends import codec_for_file
from licfpga.host.container import ContainerError, unpack
from licfpga.model.checkpoint import shipped_checkpoints
from licfpga.model.package_data import PREVIOUS_DIR, SHIPPED_DIR

from .conftest import sample_image

PREVIOUS_FLOAT = sorted(PREVIOUS_DIR.glob("*.pt"))
PREVIOUS_INT = sorted(PREVIOUS_DIR.glob("int-*.json"))


def test_previous_models_exist_and_are_not_offered_for_encoding():
    assert PREVIOUS_FLOAT, f"no previous float checkpoints in {PREVIOUS_DIR}"
    shipped = set(shipped_checkpoints())
    assert not shipped & set(PREVIOUS_FLOAT)
    from licfpga.host.integer_codec import shipped_artifacts

    assert not set(shipped_artifacts()) & set(PREVIOUS_INT)


@pytest.mark.parametrize("previous", PREVIOUS_FLOAT, ids=lambda p: p.stem)
def test_float_file_of_a_previous_release_decodes_with_its_own_weights(previous):
    from licfpga.host.codec import Codec

    old = Codec.load(previous, tile=64)
    data = old.encode(sample_image(64, 64))
    f = unpack(data)
    current = SHIPPED_DIR / previous.name
    if current.is_file():           # the name was reused: the new weights must refuse the file
        new = Codec.load(current, tile=64)
        assert new.weights_hash != old.weights_hash and not new.matches(f)
        with pytest.raises(ContainerError):
            new.decode(data)
    found = codec_for_file(data)    # no --model: picked by id + weights hash
    assert found.weights_hash == old.weights_hash
    np.testing.assert_array_equal(found.decode(data)[0], old.decode(data)[0])


@pytest.mark.parametrize("previous", PREVIOUS_INT, ids=lambda p: p.stem)
def test_integer_file_of_a_previous_release_decodes_with_its_own_artifact(previous):
    from licfpga.host.integer_codec import IntegerCodec

    old = IntegerCodec(previous, tile=64)
    data = old.encode(sample_image(64, 64))
    current = SHIPPED_DIR / previous.name
    if current.is_file():
        new = IntegerCodec(current, tile=64)
        assert new.weights_hash != old.weights_hash and not new.matches(unpack(data))
    found = codec_for_file(data)
    assert type(found) is IntegerCodec and found.weights_hash == old.weights_hash
    np.testing.assert_array_equal(found.decode(data)[0], old.decode(data)[0])
